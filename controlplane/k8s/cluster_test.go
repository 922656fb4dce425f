package k8s_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/k8s"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/bulkhead-io/bulkhead/test/kube"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestCluster runs against a real kube-apiserver and etcd (test/kube).
func TestCluster(t *testing.T) {
	env := kube.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cl, err := k8s.New(env.Config, log, k8s.Options{DefaultMode: v1alpha1.ModeMonitor})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !cl.WaitForSync(syncCtx) {
		t.Fatal("informers did not sync")
	}
	scheme, err := k8s.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("identity", func(t *testing.T) { testIdentity(t, ctx, c, cl) })
	t.Run("policies", func(t *testing.T) { testPolicies(t, ctx, c, cl) })
	t.Run("learned rules by server-side apply", func(t *testing.T) { testLearned(t, ctx, env, c, cl) })
	t.Run("invalid policies rejected", func(t *testing.T) { testInvalid(t, ctx, env, c) })
	t.Run("invalid cluster policies rejected", func(t *testing.T) { testClusterPolicyInvalid(t, ctx, c) }) // kubemode_test.go
	t.Run("leader election", func(t *testing.T) { testElection(t, ctx, env, c) })
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func mustCreate(t *testing.T, ctx context.Context, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

func namespace(t *testing.T, ctx context.Context, c client.Client, name string, labels map[string]string) {
	t.Helper()
	mustCreate(t, ctx, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
}

func controllerRef(o client.Object, kind, apiVersion string) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: o.GetName(), UID: o.GetUID(), Controller: ptr.To(true)}}
}

var podSpec = corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app", Ports: []corev1.ContainerPort{{Name: "redis", ContainerPort: 6379}}}}}

// runPod creates a pod owned by owner and gives it ip through the status
// subresource, as a kubelet would.
func runPod(t *testing.T, ctx context.Context, c client.Client, ns, name, ip string, labels map[string]string, owners []metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, OwnerReferences: owners}, Spec: *podSpec.DeepCopy()}
	mustCreate(t, ctx, c, p)
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if err := c.Status().Update(ctx, p); err != nil {
		t.Fatalf("set pod %s IP: %v", name, err)
	}
	return p
}

// eventually polls f until it returns "" or 10 seconds pass.
func eventually(t *testing.T, what string, f func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
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

func workloadsOf(t *testing.T, ctx context.Context, cl *k8s.Cluster, ns string) []identity.Workload {
	t.Helper()
	all, err := cl.Workloads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []identity.Workload
	for _, w := range all {
		if w.Namespace == ns {
			out = append(out, w)
		}
	}
	return out
}

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func testIdentity(t *testing.T, ctx context.Context, c client.Client, cl *k8s.Cluster) {
	const ns = "shop"
	namespace(t, ctx, c, ns, nil)
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "cache"}}, Spec: podSpec}
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cache"}, Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}
	mustCreate(t, ctx, c, deploy)
	rsTmpl := *tmpl.DeepCopy()
	rsTmpl.Labels["pod-template-hash"] = "6b7c"
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cache-6b7c", OwnerReferences: controllerRef(deploy, "Deployment", "apps/v1")},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: rsTmpl.Labels}, Template: rsTmpl}}
	mustCreate(t, ctx, c, rs)
	podLabels := map[string]string{"app": "cache", "pod-template-hash": "6b7c"}
	runPod(t, ctx, c, ns, "cache-6b7c-aaaaa", "198.18.2.10", podLabels, controllerRef(rs, "ReplicaSet", "apps/v1"))
	second := runPod(t, ctx, c, ns, "cache-6b7c-bbbbb", "198.18.2.11", podLabels, controllerRef(rs, "ReplicaSet", "apps/v1"))

	ssTmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}}, Spec: podSpec}
	ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: ssTmpl.Labels}, Template: ssTmpl}}
	mustCreate(t, ctx, c, ss)
	runPod(t, ctx, c, ns, "db-0", "198.18.2.20", map[string]string{"app": "db", "statefulset.kubernetes.io/pod-name": "db-0"}, controllerRef(ss, "StatefulSet", "apps/v1"))

	jobTmpl := corev1.PodTemplateSpec{Spec: *podSpec.DeepCopy()}
	jobTmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	cron := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "report"}, Spec: batchv1.CronJobSpec{Schedule: "0 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: jobTmpl}}}}
	mustCreate(t, ctx, c, cron)
	for i, name := range []string{"report-29001", "report-29002"} {
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: controllerRef(cron, "CronJob", "batch/v1")}, Spec: batchv1.JobSpec{Template: jobTmpl}}
		mustCreate(t, ctx, c, job)
		// The API server defaults the Job's selector and labels; the pod
		// gets the labels the Job controller would give it.
		runPod(t, ctx, c, ns, name+"-x", "198.18.2.3"+string(rune('0'+i)), map[string]string{"batch.kubernetes.io/job-name": name, "job-name": name, "batch.kubernetes.io/controller-uid": string(job.UID), "controller-uid": string(job.UID)}, controllerRef(job, "Job", "batch/v1"))
	}
	redis := "redis"
	mustCreate(t, ctx, c, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cache"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "cache"},
		Ports:    []corev1.ServicePort{{Port: 6379, AppProtocol: &redis}},
	}})

	redisPort := []identity.Port{{Port: 6379, Protocol: "redis"}}
	tcpPort := []identity.Port{{Port: 6379, Protocol: "tcp"}}
	want := []identity.Workload{
		{Name: "cache", Namespace: ns, Segment: "cache", IPs: ips("198.18.2.10", "198.18.2.11"), Labels: map[string]string{"app": "cache"}, Ports: redisPort},
		{Name: "db", Namespace: ns, Segment: "db", IPs: ips("198.18.2.20"), Labels: map[string]string{"app": "db"}, Ports: tcpPort},
		{Name: "report", Namespace: ns, Segment: "report", IPs: ips("198.18.2.30", "198.18.2.31"), Ports: tcpPort},
	}
	eventually(t, "workloads", func() string { return cmp.Diff(want, workloadsOf(t, ctx, cl, ns), addrCmp) })

	// Pod churn: one pod goes, another comes; the segments stay.
	if err := c.Delete(ctx, second, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	runPod(t, ctx, c, ns, "cache-6b7c-ccccc", "198.18.2.12", podLabels, controllerRef(rs, "ReplicaSet", "apps/v1"))
	want[0].IPs = ips("198.18.2.10", "198.18.2.12")
	eventually(t, "workloads after churn", func() string { return cmp.Diff(want, workloadsOf(t, ctx, cl, ns), addrCmp) })

	// The list compiles as the standalone file's does.
	settings, err := cl.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := compile.Compile(compile.Input{Workloads: workloadsOf(t, ctx, cl, ns), Policies: []*v1alpha1.SegmentPolicy{}, Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for id := range out.Proxies {
		nodes = append(nodes, id)
	}
	slices.Sort(nodes)
	if diff := cmp.Diff([]string{"cache.shop", "db.shop", "report.shop"}, nodes); diff != "" {
		t.Errorf("proxies (-want +got):\n%s", diff)
	}
	if got := out.Identities["shop/cache"].GetSegment(); got != "shop/cache" {
		t.Errorf("identity shop/cache: segment %q", got)
	}
}

func testPolicies(t *testing.T, ctx context.Context, c client.Client, cl *k8s.Cluster) {
	const ns = "pay"
	namespace(t, ctx, c, ns, map[string]string{k8s.LabelMode: "protect"})
	ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ledger"}, Spec: appsv1.StatefulSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "ledger"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ledger"}}, Spec: podSpec}}}
	mustCreate(t, ctx, c, ss)
	runPod(t, ctx, c, ns, "ledger-0", "198.18.3.10", map[string]string{"app": "ledger"}, controllerRef(ss, "StatefulSet", "apps/v1"))

	p := &v1alpha1.SegmentPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ledger"}, Spec: v1alpha1.SegmentPolicySpec{
		Ingress: []v1alpha1.Rule{{Name: "from-api", Peers: []v1alpha1.Peer{{Segment: "api"}}, Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}}, Redis: &v1alpha1.RedisMatch{Commands: []string{"get", "set"}}}},
	}}
	mustCreate(t, ctx, c, p)

	compiled := func() (*compile.Output, string) {
		ps, err := cl.List(ctx)
		if err != nil {
			return nil, err.Error()
		}
		settings, err := cl.Settings(ctx)
		if err != nil {
			return nil, err.Error()
		}
		ws, err := cl.Workloads(ctx)
		if err != nil {
			return nil, err.Error()
		}
		out, err := compile.Compile(compile.Input{Policies: ps, Workloads: ws, Settings: settings})
		if err != nil {
			return nil, err.Error()
		}
		return out, ""
	}
	eventually(t, "policy compiled", func() string {
		out, msg := compiled()
		if msg != "" {
			return msg
		}
		pp := out.Proxies["ledger.pay"]
		if pp == nil {
			return "no proxy policy for ledger.pay"
		}
		if len(pp.GetIngress()) != 1 || pp.GetIngress()[0].GetName() != "pay/ledger/from-api" {
			return "ingress: " + pp.String()
		}
		if m := pp.GetMode().String(); m != "MODE_PROTECT" { // the namespace's label
			return "mode " + m
		}
		return ""
	})

	// A mode set through SetMode wins over the namespace's (and signals
	// Changes); clearing it brings the namespace's back.
	select {
	case <-cl.Changes():
	default:
	}
	if err := cl.SetMode(ctx, ns, "ledger", v1alpha1.ModeDiscover); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cl.Changes():
	case <-time.After(5 * time.Second):
		t.Error("no change signalled after SetMode")
	}
	eventually(t, "mode discover", func() string {
		out, msg := compiled()
		if msg != "" {
			return msg
		}
		if m := out.Proxies["ledger.pay"].GetMode().String(); m != "MODE_DISCOVER" {
			return "mode " + m
		}
		return ""
	})
	got, ok, err := cl.Get(ctx, ns, "ledger")
	if err != nil || !ok {
		t.Fatalf("Get: %v %v", ok, err)
	}
	if len(got.Spec.Ingress) != 1 {
		t.Errorf("SetMode changed the rules: %+v", got.Spec.Ingress)
	}
	if err := cl.SetMode(ctx, ns, "ledger", ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "mode cleared", func() string {
		p, _, err := cl.Get(ctx, ns, "ledger")
		if err != nil {
			return err.Error()
		}
		if p.Spec.Mode != "" {
			return "mode " + string(p.Spec.Mode)
		}
		return ""
	})
	// SetMode creates a policy that is absent.
	if err := cl.SetMode(ctx, ns, "fresh", v1alpha1.ModeMonitor); err != nil {
		t.Fatal(err)
	}
	var fresh v1alpha1.SegmentPolicy
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fresh"}, &fresh); err != nil || fresh.Spec.Mode != v1alpha1.ModeMonitor {
		t.Errorf("SetMode on an absent policy: %v, mode %q", err, fresh.Spec.Mode)
	}

	// Apply is idempotent and reports what changed.
	exported := v1alpha1.ForExport(got)
	exported.Spec.Mode = ""
	changed, err := cl.Apply(ctx, []*v1alpha1.SegmentPolicy{exported})
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 0 {
		t.Errorf("Apply of the stored policy changed %v", changed)
	}
	exported.Spec.Mode = v1alpha1.ModeMonitor
	changed, err = cl.Apply(ctx, []*v1alpha1.SegmentPolicy{exported})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"pay/ledger"}, changed); diff != "" {
		t.Errorf("Apply changed (-want +got):\n%s", diff)
	}
	bad := exported.DeepCopy()
	bad.Spec.Mode = "block"
	if _, err := cl.Apply(ctx, []*v1alpha1.SegmentPolicy{bad}); err == nil {
		t.Error("Apply accepted mode block")
	}
}

func testLearned(t *testing.T, ctx context.Context, env *kube.Env, c client.Client, cl *k8s.Cluster) {
	const ns = "learn"
	namespace(t, ctx, c, ns, nil)
	// A person's policy, applied with kubectl (server-side, its own field
	// manager), with one rule.
	userYAML := `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: redis, namespace: learn}
spec:
  mode: discover
  ingress:
  - name: from-cart-redis-6379
    peers: [{segment: cart}]
    ports: [{port: 6379, protocol: redis}]
    redis: {commands: [get]}
`
	env.RunKubectl(t, userYAML, "apply", "--server-side", "--field-manager=gitops", "-f", "-")

	learned := func(peer string, cmds ...string) v1alpha1.Rule {
		return v1alpha1.Rule{Name: "from-" + peer + "-redis-6379", Peers: []v1alpha1.Peer{{Segment: peer}}, Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}}, Redis: &v1alpha1.RedisMatch{Commands: cmds}}
	}
	// Learned: one rule of a new peer, one that takes the user's rule's
	// name (it must become ...-learned, the user's rule untouched).
	changed, err := cl.MergeLearned(ctx, ns, "redis", store.Ingress, []v1alpha1.Rule{learned("api", "get", "hgetall"), learned("cart", "set")})
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		t.Fatal("MergeLearned reported no change")
	}
	egress := v1alpha1.Rule{Name: "to-db-redis-6379", Peers: []v1alpha1.Peer{{Segment: "db"}}, Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}}, Redis: &v1alpha1.RedisMatch{Commands: []string{"ping"}}}
	if _, err := cl.MergeLearned(ctx, ns, "redis", store.Egress, []v1alpha1.Rule{egress}); err != nil {
		t.Fatal(err)
	}
	// The same again: nothing to write.
	if changed, err := cl.MergeLearned(ctx, ns, "redis", store.Ingress, []v1alpha1.Rule{learned("api", "get")}); err != nil || changed {
		t.Errorf("MergeLearned of known rules: changed %v, %v", changed, err)
	}
	// Widening a learned rule.
	if changed, err := cl.MergeLearned(ctx, ns, "redis", store.Ingress, []v1alpha1.Rule{learned("api", "del")}); err != nil || !changed {
		t.Errorf("MergeLearned widening: changed %v, %v", changed, err)
	}

	var p v1alpha1.SegmentPolicy
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "redis"}, &p); err != nil {
		t.Fatal(err)
	}
	type rule struct {
		Name, Origin string
		Commands     []string
	}
	summary := func(rs []v1alpha1.Rule) []rule {
		var out []rule
		for _, r := range rs {
			out = append(out, rule{r.Name, string(r.Origin), r.Redis.Commands})
		}
		slices.SortFunc(out, func(a, b rule) int { return strings.Compare(a.Name, b.Name) })
		return out
	}
	wantIn := []rule{
		{"from-api-redis-6379", "learned", []string{"del", "get", "hgetall"}},
		{"from-cart-redis-6379", "user", []string{"get"}},
		{"from-cart-redis-6379-learned", "learned", []string{"set"}},
	}
	if diff := cmp.Diff(wantIn, summary(p.Spec.Ingress)); diff != "" {
		t.Errorf("ingress (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]rule{{"to-db-redis-6379", "learned", []string{"ping"}}}, summary(p.Spec.Egress)); diff != "" {
		t.Errorf("egress (-want +got):\n%s", diff)
	}
	if p.Spec.Mode != v1alpha1.ModeDiscover {
		t.Errorf("mode %q: the learner changed it", p.Spec.Mode)
	}
	owners := map[string][]string{}
	for _, mf := range p.ManagedFields {
		raw := mf.FieldsV1.GetRawString()
		for _, r := range append(append([]v1alpha1.Rule{}, p.Spec.Ingress...), p.Spec.Egress...) {
			if strings.Contains(raw, `k:{\"name\":\"`+r.Name+`\"}`) {
				owners[r.Name] = append(owners[r.Name], mf.Manager)
			}
		}
	}
	wantOwners := map[string][]string{
		"from-api-redis-6379":          {k8s.FieldManagerLearner},
		"from-cart-redis-6379":         {"gitops"},
		"from-cart-redis-6379-learned": {k8s.FieldManagerLearner},
		"to-db-redis-6379":             {k8s.FieldManagerLearner},
	}
	if diff := cmp.Diff(wantOwners, owners); diff != "" {
		t.Errorf("rule owners (-want +got):\n%s", diff)
	}

	// GitOps applies its policy again, changed: the learned rules stay,
	// and the learner still leaves the person's rule alone.
	env.RunKubectl(t, strings.Replace(userYAML, "commands: [get]", "commands: [get, mget]", 1), "apply", "--server-side", "--field-manager=gitops", "-f", "-")
	if _, err := cl.MergeLearned(ctx, ns, "redis", store.Ingress, []v1alpha1.Rule{learned("cart", "incr")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "redis"}, &p); err != nil {
		t.Fatal(err)
	}
	wantIn[1].Commands = []string{"get", "mget"}
	wantIn[2].Commands = []string{"incr", "set"}
	if diff := cmp.Diff(wantIn, summary(p.Spec.Ingress)); diff != "" {
		t.Errorf("ingress after GitOps re-applied (-want +got):\n%s", diff)
	}

	// A learned rule another manager took a share of is the person's now.
	env.RunKubectl(t, `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: redis, namespace: learn}
spec:
  ingress:
  - name: from-api-redis-6379
    origin: learned
    peers: [{segment: api}]
    ports: [{port: 6379, protocol: redis}]
    redis: {commands: [del, get, hgetall]}
`, "apply", "--server-side", "--field-manager=reviewer", "-f", "-")
	if _, err := cl.MergeLearned(ctx, ns, "redis", store.Ingress, []v1alpha1.Rule{learned("api", "flushall")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "redis"}, &p); err != nil {
		t.Fatal(err)
	}
	wantIn = append(wantIn[:1], wantIn...)
	wantIn[1] = rule{"from-api-redis-6379-learned", "learned", []string{"flushall"}}
	if diff := cmp.Diff(wantIn, summary(p.Spec.Ingress)); diff != "" {
		t.Errorf("ingress after a reviewer took a learned rule (-want +got):\n%s", diff)
	}

	// The learner creates a policy that does not exist, with no mode.
	if _, err := cl.MergeLearned(ctx, ns, "new", store.Ingress, []v1alpha1.Rule{learned("api", "get")}); err != nil {
		t.Fatal(err)
	}
	var np v1alpha1.SegmentPolicy
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "new"}, &np); err != nil || np.Spec.Mode != "" || len(np.Spec.Ingress) != 1 {
		t.Errorf("learned into an absent policy: %v, %+v", err, np.Spec)
	}
}

func testInvalid(t *testing.T, ctx context.Context, env *kube.Env, c client.Client) {
	const ns = "bad"
	namespace(t, ctx, c, ns, nil)
	ok := v1alpha1.Rule{Name: "r", Ports: []v1alpha1.PortProtocol{{Port: 80}}}
	tests := []struct {
		name string
		spec v1alpha1.SegmentPolicySpec
		want string // in the API server's message
	}{
		{"unknown mode", v1alpha1.SegmentPolicySpec{Mode: "block"}, `spec.mode: Unsupported value: "block"`},
		{"port out of range", v1alpha1.SegmentPolicySpec{Ingress: []v1alpha1.Rule{{Name: "r", Ports: []v1alpha1.PortProtocol{{Port: 70000}}}}}, "spec.ingress[0].ports[0].port: Invalid value: 70000"},
		{"no ports", v1alpha1.SegmentPolicySpec{Ingress: []v1alpha1.Rule{{Name: "r"}}}, "spec.ingress[0].ports"},
		{"rule name", v1alpha1.SegmentPolicySpec{Egress: []v1alpha1.Rule{{Name: "Bad_Name", Ports: ok.Ports}}}, "spec.egress[0].name: Invalid value"},
		{"duplicate rule names", v1alpha1.SegmentPolicySpec{Ingress: []v1alpha1.Rule{ok, ok}}, `spec.ingress[1]: Duplicate value: {"name":"r"}`},
		{"origin", v1alpha1.SegmentPolicySpec{Ingress: []v1alpha1.Rule{{Name: "r", Origin: "robot", Ports: ok.Ports}}}, `spec.ingress[0].origin: Unsupported value: "robot"`},
	}
	for _, tc := range tests {
		p := &v1alpha1.SegmentPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}, Spec: tc.spec}
		err := c.Create(ctx, p)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			_ = c.Delete(ctx, p)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
	}
	// kubectl lists policies with the printer columns.
	mustCreate(t, ctx, c, &v1alpha1.SegmentPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "good"}, Spec: v1alpha1.SegmentPolicySpec{Mode: v1alpha1.ModeProtect, Ingress: []v1alpha1.Rule{ok}}})
	out := env.RunKubectl(t, "", "get", "segmentpolicies", "-n", ns)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME MODE RULES LEARNED VIOLATIONS AGE" || !strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "good protect") {
		t.Errorf("kubectl get segmentpolicies:\n%s", out)
	}
}
