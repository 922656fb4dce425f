package run

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/k8s"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
	kubetest "github.com/bulkhead-io/bulkhead/test/kube"
)

// TestKube runs the control plane in kube mode against one real
// kube-apiserver and etcd (test/kube) shared by its subtests.
func TestKube(t *testing.T) {
	env := kubetest.Start(t)
	scheme, err := k8s.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Run("single replica", func(t *testing.T) { testKubeSingle(t, ctx, env, c) })
	t.Run("two replicas fail over", func(t *testing.T) { testKubeHA(t, ctx, env, c) })
	t.Run("the CA bundle is published for injected proxies", func(t *testing.T) { testKubeCA(t, ctx, env, c) }) // capublish_test.go
}

// replica is one control plane in kube mode.
type replica struct {
	addrs  Addrs
	cancel context.CancelFunc
	done   chan error
}

func startReplica(t *testing.T, env *kubetest.Env, identity, leaseNS string, keep bool) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan Addrs, 1)
	go func() {
		r.done <- Run(ctx, Config{
			StateDir:      t.TempDir(),
			GRPCListener:  listen(t),
			AdminListener: listen(t),
			AdminAuth:     AdminAuthConfig{TokenFile: testTokenFile(t)},
			Trust:         TrustConfig{Insecure: true},
			Debounce:      20 * time.Millisecond,
			Ready:         func(a Addrs) { ready <- a },
			Kube: &KubeConfig{
				Rest: env.Config, Namespace: leaseNS, Identity: identity,
				LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
				KeepLeaseOnStop: keep, StatusInterval: 300 * time.Millisecond, EventInterval: -1,
			},
		}, testLog(t))
	}()
	select {
	case r.addrs = <-ready:
	case err := <-r.done:
		t.Fatalf("Run %s: %v", identity, err)
	}
	t.Cleanup(r.stop(t))
	return r
}

// stop returns a function that stops the replica (once) and checks Run's
// result.
func (r *replica) stop(t *testing.T) func() {
	return func() {
		r.cancel()
		select {
		case err, ok := <-r.done:
			if ok && err != nil {
				t.Errorf("Run: %v", err)
			}
			if ok {
				close(r.done)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
	}
}

// adsWatch follows node's ProxyPolicy over a real ADS stream.
func adsWatch(t *testing.T, addr net.Addr, node string) <-chan *bulkheadv1.ProxyPolicy {
	t.Helper()
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	policies := make(chan *bulkheadv1.ProxyPolicy, 64)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer close(policies)
		for {
			r, err := ads.Recv()
			if err != nil {
				return
			}
			for _, a := range r.GetResources() {
				p := new(bulkheadv1.ProxyPolicy)
				if err := a.UnmarshalTo(p); err != nil {
					return
				}
				select {
				case policies <- p:
				default: // the test reads only the latest ones
				}
			}
			if err := ads.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: xds.TypeProxyPolicy, ResourceNames: []string{node}, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
				return
			}
		}
	}()
	if err := ads.Send(&discoverygrpc.DiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: xds.TypeProxyPolicy, ResourceNames: []string{node}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		scancel()
		<-stopped
		conn.Close()
	})
	return policies
}

// nextPolicy waits for a ProxyPolicy that satisfies ok.
func nextPolicy(t *testing.T, ch <-chan *bulkheadv1.ProxyPolicy, what string, within time.Duration, ok func(*bulkheadv1.ProxyPolicy) bool) *bulkheadv1.ProxyPolicy {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case p, open := <-ch:
			if !open {
				t.Fatalf("%s: ADS stream ended", what)
			}
			if ok(p) {
				return p
			}
		case <-timeout:
			t.Fatalf("%s: no such ProxyPolicy within %v", what, within)
		}
	}
}

// report sends one batch of flows to a replica over a real FlowService
// stream.
func report(t *testing.T, addr net.Addr, node string, flows ...*bulkheadv1.Flow) {
	t.Helper()
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fs, err := bulkheadv1.NewFlowServiceClient(conn).Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Send(&bulkheadv1.FlowBatch{Node: node, Flows: flows}); err != nil {
		t.Fatal(err)
	}
	if sum, err := fs.CloseAndRecv(); err != nil || int(sum.GetAccepted()) != len(flows) {
		t.Fatalf("report: %v %v", sum, err)
	}
}

func flow(src, srcSeg, dst, dstSeg string, port uint32, proto, verb, resource string, mode bulkheadv1.Mode, verdict bulkheadv1.Verdict, reason string) *bulkheadv1.Flow {
	now := timestamppb.Now()
	return &bulkheadv1.Flow{
		Direction: bulkheadv1.Direction_DIRECTION_INGRESS,
		SrcIp:     src, SrcSegment: srcSeg, DstIp: dst, DstSegment: dstSeg, DstPort: port,
		Protocol: proto, Verb: verb, Resource: resource, Verdict: verdict, Mode: mode,
		Reason: reason, Count: 1, Bytes: 10, FirstSeen: now, LastSeen: now,
	}
}

func runPod(t *testing.T, ctx context.Context, c client.Client, ns, name, ip string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}},
	}
	if err := c.Create(ctx, p); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if err := c.Status().Update(ctx, p); err != nil {
		t.Fatalf("set pod %s IP: %v", name, err)
	}
	return p
}

func mkNamespace(t *testing.T, ctx context.Context, c client.Client, name string, labels map[string]string) {
	t.Helper()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// waitFor polls f until it returns "" or within passes.
func waitFor(t *testing.T, what string, within time.Duration, f func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getPolicy(t *testing.T, ctx context.Context, c client.Client, ns, name string) (*v1alpha1.SegmentPolicy, error) {
	t.Helper()
	var p v1alpha1.SegmentPolicy
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p)
	return &p, err
}

func managers(p *v1alpha1.SegmentPolicy) []string {
	var out []string
	for _, mf := range p.ManagedFields {
		out = append(out, mf.Manager+"/"+string(mf.Operation))
	}
	slices.Sort(out)
	return out
}

func testKubeSingle(t *testing.T, ctx context.Context, env *kubetest.Env, c client.Client) {
	const ns = "shop"
	mkNamespace(t, ctx, c, "bulkhead-system", nil)
	mkNamespace(t, ctx, c, ns, map[string]string{k8s.LabelMode: "discover", k8s.LabelManaged: "true"})
	redisPod := runPod(t, ctx, c, ns, "redis", "198.18.70.20")
	runPod(t, ctx, c, ns, "cart", "198.18.70.10")
	// A person's policy with a rule of theirs, applied by kubectl.
	env.RunKubectl(t, `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: redis, namespace: shop}
spec:
  ingress:
  - name: from-ops
    peers: [{segment: ops}]
    ports: [{port: 6379, protocol: redis}]
`, "apply", "--server-side", "-f", "-")

	r := startReplica(t, env, "cp-single", "bulkhead-system", false)
	base := "http://" + r.addrs.Admin.String()
	waitFor(t, "healthy after the informers synced", 10*time.Second, func() string {
		if code, b := httpDo(t, "GET", base+"/healthz", ""); code != 200 {
			return fmt.Sprintf("%d %s", code, b)
		}
		return ""
	})
	policies := adsWatch(t, r.addrs.GRPC, "redis.shop")
	p := nextPolicy(t, policies, "initial policy", 5*time.Second, func(p *bulkheadv1.ProxyPolicy) bool { return len(p.GetIngress()) == 1 })
	if p.GetMode() != bulkheadv1.Mode_MODE_DISCOVER || p.GetIngress()[0].GetName() != "shop/redis/from-ops" {
		t.Fatalf("initial policy = %v", p)
	}

	t.Run("a patched mode reaches the proxy within 1s", func(t *testing.T) {
		start := time.Now()
		env.RunKubectl(t, "", "-n", ns, "patch", "segmentpolicy", "redis", "--type", "merge", "-p", `{"spec":{"mode":"monitor"}}`)
		nextPolicy(t, policies, "monitor", time.Second, func(p *bulkheadv1.ProxyPolicy) bool { return p.GetMode() == bulkheadv1.Mode_MODE_MONITOR })
		t.Logf("kubectl patch → ProxyPolicy on the ADS stream: %v", time.Since(start).Round(time.Millisecond))
		env.RunKubectl(t, "", "-n", ns, "patch", "segmentpolicy", "redis", "--type", "json", "-p", `[{"op":"remove","path":"/spec/mode"}]`)
		nextPolicy(t, policies, "discover again", time.Second, func(p *bulkheadv1.ProxyPolicy) bool { return p.GetMode() == bulkheadv1.Mode_MODE_DISCOVER })
	})

	t.Run("learned rules by server-side apply beside a person's", func(t *testing.T) {
		report(t, r.addrs.GRPC, "redis.shop",
			flow("198.18.70.10", "shop/cart", "198.18.70.20", "shop/redis", 6379, "redis", "GET", "k1", bulkheadv1.Mode_MODE_DISCOVER, bulkheadv1.Verdict_VERDICT_VIOLATION, "no rule for peer"))
		nextPolicy(t, policies, "learned rule served", 5*time.Second, func(p *bulkheadv1.ProxyPolicy) bool { return len(p.GetIngress()) == 2 })
		got, err := getPolicy(t, ctx, c, ns, "redis")
		if err != nil {
			t.Fatal(err)
		}
		names := []string{}
		for _, r := range got.Spec.Ingress {
			names = append(names, r.Name+":"+string(r.Origin))
		}
		slices.Sort(names)
		if want := []string{"from-cart-redis-6379:learned", "from-ops:user"}; !slices.Equal(names, want) {
			t.Fatalf("rules %v, want %v", names, want)
		}
		if m := managers(got); !slices.Contains(m, k8s.FieldManagerLearner+"/Apply") || !slices.Contains(m, "kubectl/Apply") {
			t.Errorf("managers %v", m)
		}
		ops := got.Spec.Ingress[slices.IndexFunc(got.Spec.Ingress, func(r v1alpha1.Rule) bool { return r.Name == "from-ops" })]
		if len(ops.Peers) != 1 || ops.Peers[0].Segment != "ops" || ops.Redis != nil {
			t.Errorf("the person's rule changed: %+v", ops)
		}
	})

	t.Run("a mode set through the admin API is a server-side apply", func(t *testing.T) {
		if code, b := httpDo(t, "PUT", base+"/v1/segments/shop/redis/mode", `{"mode":"protect"}`); code != 200 {
			t.Fatalf("set mode: %d %s", code, b)
		}
		nextPolicy(t, policies, "protect", 2*time.Second, func(p *bulkheadv1.ProxyPolicy) bool { return p.GetMode() == bulkheadv1.Mode_MODE_PROTECT })
		got, err := getPolicy(t, ctx, c, ns, "redis")
		if err != nil {
			t.Fatal(err)
		}
		if got.Spec.Mode != v1alpha1.ModeProtect || !slices.Contains(managers(got), k8s.FieldManagerMode+"/Apply") {
			t.Errorf("mode %q, managers %v", got.Spec.Mode, managers(got))
		}
	})

	t.Run("status written back", func(t *testing.T) {
		report(t, r.addrs.GRPC, "redis.shop", func() *bulkheadv1.Flow {
			f := flow("198.18.70.10", "shop/cart", "198.18.70.20", "shop/redis", 6379, "redis", "GET", "k1", bulkheadv1.Mode_MODE_PROTECT, bulkheadv1.Verdict_VERDICT_ALLOW, "")
			f.Rule, f.Count = "shop/redis/from-cart-redis-6379", 5
			return f
		}())
		waitFor(t, "status", 10*time.Second, func() string {
			got, err := getPolicy(t, ctx, c, ns, "redis")
			if err != nil {
				return err.Error()
			}
			st := got.Status
			if st.RuleCount != 2 || st.LearnedRules != 1 || st.Proxies != 1 || st.ProxiesCurrent != 1 {
				return fmt.Sprintf("counts: %+v", st)
			}
			if len(st.Rules) != 1 || st.Rules[0].Name != "from-cart-redis-6379" || st.Rules[0].Hits != 5 || st.Rules[0].LastHit == nil {
				return fmt.Sprintf("rule hits: %+v", st.Rules)
			}
			if len(st.Conditions) != 1 || st.Conditions[0].Type != "Compiled" || st.Conditions[0].Status != metav1.ConditionTrue {
				return fmt.Sprintf("conditions: %+v", st.Conditions)
			}
			if !slices.Contains(managers(got), k8s.FieldManagerStatus+"/Update") {
				return fmt.Sprintf("managers %v", managers(got))
			}
			return ""
		})
		out := env.RunKubectl(t, "", "-n", ns, "get", "segmentpolicies", "redis")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 ||
			strings.Join(strings.Fields(lines[0]), " ") != "NAME MODE RULES LEARNED VIOLATIONS AGE" ||
			!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "redis protect 2 1") {
			t.Errorf("kubectl get:\n%s", out)
		}
	})

	t.Run("violations become aggregated Events", func(t *testing.T) {
		deny := flow("198.18.70.10", "shop/cart", "198.18.70.20", "shop/redis", 6379, "redis", "CONFIG", "", bulkheadv1.Mode_MODE_PROTECT, bulkheadv1.Verdict_VERDICT_DENY, "no rule allows command")
		for range 3 {
			report(t, r.addrs.GRPC, "redis.shop", deny)
		}
		waitFor(t, "events", 10*time.Second, func() string {
			var evs corev1.EventList
			if err := c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
				return err.Error()
			}
			var onPod, onPolicy []string
			for _, e := range evs.Items {
				if e.Reason != k8s.ReasonDenied {
					continue
				}
				s := fmt.Sprintf("%s x%d: %s", e.InvolvedObject.Name, e.Count, e.Message)
				switch {
				case e.InvolvedObject.Kind == "Pod" && e.InvolvedObject.UID == redisPod.UID:
					onPod = append(onPod, s)
				case e.InvolvedObject.Kind == v1alpha1.KindSegmentPolicy && e.InvolvedObject.Name == "redis":
					onPolicy = append(onPolicy, s)
				}
			}
			want := "redis x3: ingress denied from shop/cart to shop/redis port 6379/redis: no rule allows command"
			if !slices.Equal(onPod, []string{want}) || !slices.Equal(onPolicy, []string{want}) {
				return fmt.Sprintf("on the pod %q, on the policy %q", onPod, onPolicy)
			}
			return ""
		})
	})

	t.Run("a new workload of a managed namespace gets a policy", func(t *testing.T) {
		runPod(t, ctx, c, ns, "web", "198.18.70.30")
		waitFor(t, "policy web", 10*time.Second, func() string {
			got, err := getPolicy(t, ctx, c, ns, "web")
			if err != nil {
				return err.Error()
			}
			if got.Spec.Mode != v1alpha1.ModeDiscover || len(got.Spec.Ingress)+len(got.Spec.Egress) != 0 {
				return fmt.Sprintf("spec %+v", got.Spec)
			}
			return ""
		})
		if _, err := getPolicy(t, ctx, c, ns, "cart"); err != nil {
			t.Errorf("policy cart (existing workload, no policy): %v", err)
		}
	})
	t.Run("cluster policies compile with the namespaced ones", func(t *testing.T) {
		start := time.Now()
		env.RunKubectl(t, `apiVersion: bulkhead.io/v1alpha1
kind: ClusterSegmentPolicy
metadata: {name: dns}
spec:
  namespaceSelector: {matchLabels: {bulkhead.io/managed: "true"}}
  selector: {matchLabels: {app: redis}}
  egress:
  - name: to-coredns
    peers: [{namespace: kube-system, segment: coredns}]
    ports: [{port: 53, protocol: dns}]
`, "apply", "--server-side", "-f", "-")
		p := nextPolicy(t, policies, "cluster rule", 2*time.Second, func(p *bulkheadv1.ProxyPolicy) bool { return len(p.GetEgress()) == 1 })
		t.Logf("kubectl apply of a ClusterSegmentPolicy → ProxyPolicy: %v", time.Since(start).Round(time.Millisecond))
		if r := p.GetEgress()[0]; r.GetName() != "shop/redis/cluster.dns.to-coredns" || r.GetPeers()[0].GetSegment() != "kube-system/coredns" ||
			len(p.GetIngress()) != 2 || p.GetMode() != bulkheadv1.Mode_MODE_PROTECT {
			t.Errorf("policy = %v", p)
		}
		// Not part of the namespaced policy: export and the object stay as they were.
		got, err := getPolicy(t, ctx, c, ns, "redis")
		if err != nil || len(got.Spec.Egress) != 0 {
			t.Errorf("policy redis: %v, egress %+v", err, got.Spec.Egress)
		}
		waitFor(t, "cluster policy status", 10*time.Second, func() string {
			var cp v1alpha1.ClusterSegmentPolicy
			if err := c.Get(ctx, client.ObjectKey{Name: "dns"}, &cp); err != nil {
				return err.Error()
			}
			if st := cp.Status; st.EgressRules != 1 || st.Segments != 1 || len(st.Conditions) != 1 || st.Conditions[0].Status != metav1.ConditionTrue {
				return fmt.Sprintf("status %+v", st)
			}
			return ""
		})
		out := env.RunKubectl(t, "", "get", "cspol")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 ||
			strings.Join(strings.Fields(lines[0]), " ") != "NAME INGRESS EGRESS SEGMENTS AGE" ||
			!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "dns 1 1") {
			t.Errorf("kubectl get cspol:\n%s", out)
		}
	})
}

// testKubeHA runs two replicas on one API server; the leader is stopped
// without releasing its Lease (a crash) while both learn; the other takes
// the Lease within the lease duration and writes what it learned as a
// follower: every learned rule ends up in the policy exactly once.
func testKubeHA(t *testing.T, ctx context.Context, env *kubetest.Env, c client.Client) {
	const ns, leaseNS = "ha", "ha-system"
	mkNamespace(t, ctx, c, leaseNS, nil)
	mkNamespace(t, ctx, c, ns, map[string]string{k8s.LabelMode: "discover"})
	runPod(t, ctx, c, ns, "api", "198.18.71.20")
	runPod(t, ctx, c, ns, "web", "198.18.71.10")
	env.RunKubectl(t, `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: api, namespace: ha}
spec:
  ingress:
  - name: from-ops
    peers: [{segment: ops}]
    ports: [{port: 8080, protocol: http}]
`, "apply", "--server-side", "-f", "-")

	a := startReplica(t, env, "cp-a", leaseNS, true)
	holder := func() string {
		var l coordinationv1.Lease
		if err := c.Get(ctx, client.ObjectKey{Namespace: leaseNS, Name: k8s.DefaultLeaseName}, &l); err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	waitFor(t, "cp-a leads", 10*time.Second, func() string {
		if h := holder(); h != "cp-a" {
			return "holder " + h
		}
		return ""
	})
	b := startReplica(t, env, "cp-b", leaseNS, true)
	// Both serve xDS.
	nextPolicy(t, adsWatch(t, b.addrs.GRPC, "api.ha"), "follower serves xDS", 10*time.Second, func(p *bulkheadv1.ProxyPolicy) bool { return true })

	http := func(verb string) *bulkheadv1.Flow {
		return flow("198.18.71.10", "ha/web", "198.18.71.20", "ha/api", 8080, "http", verb, "/items/1", bulkheadv1.Mode_MODE_DISCOVER, bulkheadv1.Verdict_VERDICT_VIOLATION, "no rule for peer")
	}
	learned := func() (names []string, err error) {
		p, err := getPolicy(t, ctx, c, ns, "api")
		if err != nil {
			return nil, err
		}
		for _, r := range p.Spec.Ingress {
			names = append(names, r.Name)
		}
		slices.Sort(names)
		return names, nil
	}
	// The leader learns GET and POST; the follower, meanwhile, POST (again)
	// and PUT, which it keeps.
	report(t, a.addrs.GRPC, "api.ha", http("GET"), http("POST"))
	report(t, b.addrs.GRPC, "api.ha", http("POST"), http("PUT"))
	waitFor(t, "the leader's rules", 5*time.Second, func() string {
		names, err := learned()
		if err != nil {
			return err.Error()
		}
		if want := []string{"from-ops", "from-web-http-8080-get", "from-web-http-8080-post"}; !slices.Equal(names, want) {
			return fmt.Sprintf("rules %v, want %v", names, want)
		}
		return ""
	})
	// The leader dies mid-learning: DELETE reported to it just before.
	report(t, a.addrs.GRPC, "api.ha", http("DELETE"))
	killed := time.Now()
	a.stop(t)()
	waitFor(t, "cp-b takes over", 3*time.Second+2*time.Second, func() string {
		if h := holder(); h != "cp-b" {
			return "holder " + h
		}
		return ""
	})
	t.Logf("cp-b leads %v after cp-a died (lease duration 3s)", time.Since(killed).Round(time.Millisecond))
	// The new leader learns again what the old one did (idempotent).
	report(t, b.addrs.GRPC, "api.ha", http("GET"), http("POST"), http("DELETE"))
	want := []string{"from-ops", "from-web-http-8080-delete", "from-web-http-8080-get", "from-web-http-8080-post", "from-web-http-8080-put"}
	waitFor(t, "every learned rule once", 10*time.Second, func() string {
		names, err := learned()
		if err != nil {
			return err.Error()
		}
		if !slices.Equal(names, want) {
			return fmt.Sprintf("rules %v, want %v", names, want)
		}
		return ""
	})
	p, err := getPolicy(t, ctx, c, ns, "api")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Spec.Ingress {
		b, _ := json.Marshal(r)
		if r.Name == "from-ops" {
			if r.Origin != v1alpha1.OriginUser || r.HTTP != nil {
				t.Errorf("the person's rule changed: %s", b)
			}
			continue
		}
		if r.Origin != v1alpha1.OriginLearned || r.HTTP == nil || len(r.HTTP.Methods) != 1 || len(r.HTTP.Paths) != 1 {
			t.Errorf("learned rule %s", b)
		}
	}
}
