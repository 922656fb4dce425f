package k8s

import (
	"net/netip"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func ctrl(kind, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: kind, Name: name, UID: types.UID("u-" + name), Controller: &yes}}
}

type podOpt func(*corev1.Pod)

func pod(ns, name, ip string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1000, 0))}}
	p.Status.Phase = corev1.PodRunning
	if ip != "" {
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func owned(kind, name string) podOpt {
	return func(p *corev1.Pod) { p.OwnerReferences = ctrl(kind, name) }
}
func labeled(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}
func containerPort(name string, port int32) podOpt {
	return func(p *corev1.Pod) {
		if len(p.Spec.Containers) == 0 {
			p.Spec.Containers = []corev1.Container{{Name: "app"}}
		}
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: name, ContainerPort: port})
	}
}

func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func TestWorkloads(t *testing.T) {
	rs := func(ns, name, deploy string) *appsv1.ReplicaSet {
		r := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if deploy != "" {
			r.OwnerReferences = ctrl("Deployment", deploy)
		}
		return r
	}
	job := func(ns, name, cron string) *batchv1.Job {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if cron != "" {
			j.OwnerReferences = ctrl("CronJob", cron)
		}
		return j
	}
	redisProto := "redis"
	ws := "kubernetes.io/ws"
	tests := []struct {
		name string
		f    facts
		want []identity.Workload
	}{
		{
			name: "deployment pods share one workload; per-pod labels left out",
			f: facts{
				pods: []*corev1.Pod{
					pod("shop", "web-7d9f-a", "198.18.0.11", owned("ReplicaSet", "web-7d9f"), labeled("app", "web", "pod-template-hash", "7d9f")),
					pod("shop", "web-7d9f-b", "198.18.0.10", owned("ReplicaSet", "web-7d9f"), labeled("app", "web", "pod-template-hash", "7d9f")),
					// a new rollout's pod: another ReplicaSet, same Deployment
					pod("shop", "web-55aa-a", "198.18.0.12", owned("ReplicaSet", "web-55aa"), labeled("app", "web", "pod-template-hash", "55aa")),
				},
				replicaSets: map[string]*appsv1.ReplicaSet{"shop/web-7d9f": rs("shop", "web-7d9f", "web")},
			},
			want: []identity.Workload{{Name: "web", Namespace: "shop", Segment: "web", IPs: ips("198.18.0.10", "198.18.0.11", "198.18.0.12"), Labels: map[string]string{"app": "web"}}},
		},
		{
			name: "cronjob, statefulset, daemonset, bare replicaset, bare pods by app label",
			f: facts{
				pods: []*corev1.Pod{
					pod("ops", "backup-2900-x", "198.18.1.1", owned("Job", "backup-2900"), labeled("job-name", "backup-2900", "batch.kubernetes.io/job-name", "backup-2900")),
					pod("ops", "backup-2901-y", "198.18.1.2", owned("Job", "backup-2901")),
					pod("ops", "once-z", "198.18.1.3", owned("Job", "once")),
					pod("ops", "db-0", "198.18.1.4", owned("StatefulSet", "db"), labeled("app", "db", "statefulset.kubernetes.io/pod-name", "db-0", "apps.kubernetes.io/pod-index", "0")),
					pod("ops", "agent-q", "198.18.1.5", owned("DaemonSet", "agent")),
					pod("ops", "lonely-r", "198.18.1.6", owned("ReplicaSet", "lonely")),
					pod("ops", "runner-abc12", "198.18.1.7", labeled("app.kubernetes.io/name", "ci-runner")),
					pod("ops", "runner-xyz89", "198.18.1.8", labeled("app.kubernetes.io/name", "ci-runner")),
					pod("ops", "debug", "198.18.1.9"),
				},
				replicaSets: map[string]*appsv1.ReplicaSet{"ops/lonely": rs("ops", "lonely", "")},
				jobs: map[string]*batchv1.Job{
					"ops/backup-2900": job("ops", "backup-2900", "backup"),
					"ops/backup-2901": job("ops", "backup-2901", "backup"),
					"ops/once":        job("ops", "once", ""),
				},
			},
			want: []identity.Workload{
				{Name: "agent", Namespace: "ops", Segment: "agent", IPs: ips("198.18.1.5")},
				{Name: "backup", Namespace: "ops", Segment: "backup", IPs: ips("198.18.1.1", "198.18.1.2")},
				{Name: "ci-runner", Namespace: "ops", Segment: "ci-runner", IPs: ips("198.18.1.7", "198.18.1.8"), Labels: map[string]string{"app.kubernetes.io/name": "ci-runner"}},
				{Name: "db", Namespace: "ops", Segment: "db", IPs: ips("198.18.1.4"), Labels: map[string]string{"app": "db"}},
				{Name: "debug", Namespace: "ops", Segment: "debug", IPs: ips("198.18.1.9")},
				{Name: "lonely", Namespace: "ops", Segment: "lonely", IPs: ips("198.18.1.6")},
				{Name: "once", Namespace: "ops", Segment: "once", IPs: ips("198.18.1.3")},
			},
		},
		{
			name: "replicaset not yet cached: deployment from the template hash",
			f: facts{pods: []*corev1.Pod{
				pod("shop", "cart-abc12-x", "198.18.0.20", owned("ReplicaSet", "cart-abc12"), labeled("pod-template-hash", "abc12")),
			}},
			want: []identity.Workload{{Name: "cart", Namespace: "shop", Segment: "cart", IPs: ips("198.18.0.20")}},
		},
		{
			name: "pods without IP, finished, on the host network are no workloads",
			f: facts{pods: []*corev1.Pod{
				pod("shop", "pending", ""),
				pod("shop", "done", "198.18.0.30", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
				pod("shop", "failed", "198.18.0.31", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }),
				pod("shop", "node-agent", "198.18.0.32", func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
			}},
		},
		{
			name: "a reused IP belongs to the pod not being deleted",
			f: facts{pods: []*corev1.Pod{
				pod("shop", "old", "198.18.0.40", owned("StatefulSet", "old"), func(p *corev1.Pod) {
					now := metav1.NewTime(time.Unix(2000, 0))
					p.DeletionTimestamp = &now
				}, func(p *corev1.Pod) { p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: "198.18.0.41"}) }),
				pod("shop", "new", "198.18.0.40", owned("StatefulSet", "new")),
			}},
			want: []identity.Workload{
				{Name: "new", Namespace: "shop", Segment: "new", IPs: ips("198.18.0.40")},
				{Name: "old", Namespace: "shop", Segment: "old", IPs: ips("198.18.0.41")},
			},
		},
		{
			name: "ports: containers' and services' appProtocol; names shared by two kinds; long names",
			f: facts{
				pods: []*corev1.Pod{
					pod("shop", "cache-0", "198.18.0.50", owned("StatefulSet", "cache"), labeled("app", "cache"), containerPort("redis", 6379), containerPort("metrics", 9121)),
					pod("shop", "cache-x", "198.18.0.51", owned("DaemonSet", "cache"), labeled("app", "other")),
					pod("shop", "api-0", "198.18.0.52", owned("StatefulSet", "api.v2.very-long-name-that-goes-on-and-on-and-on-beyond-sixty-three"), labeled("app", "api"), containerPort("", 8080)),
				},
				services: []*corev1.Service{
					{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cache"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "cache"}, Ports: []corev1.ServicePort{{Port: 6379, TargetPort: intstr.FromString("redis"), AppProtocol: &redisProto}}}},
					{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "api"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), AppProtocol: &ws}, {Port: 53, Protocol: corev1.ProtocolUDP}}}},
					{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "api"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "api"}, Ports: []corev1.ServicePort{{Port: 9999}}}},
				},
			},
			want: []identity.Workload{
				{Name: "api-v2-very-long-name-that-goes-on-and-on-and-on-beyon-dcb8ee29", Namespace: "shop", Segment: "api-v2-very-long-name-that-goes-on-and-on-and-on-beyon-dcb8ee29", IPs: ips("198.18.0.52"), Labels: map[string]string{"app": "api"}, Ports: []identity.Port{{Port: 8080, Protocol: "http"}}},
				{Name: "cache", Namespace: "shop", Segment: "cache", IPs: ips("198.18.0.50"), Labels: map[string]string{"app": "cache"}, Ports: []identity.Port{{Port: 6379, Protocol: "redis"}, {Port: 9121, Protocol: "tcp"}}},
				{Name: "cache-daemonset", Namespace: "shop", Segment: "cache-daemonset", IPs: ips("198.18.0.51"), Labels: map[string]string{"app": "other"}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := workloads(tc.f)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("workloads (-want +got):\n%s", diff)
			}
			// What a cluster yields compiles as the standalone file's does.
			if _, err := compile.Compile(compile.Input{Workloads: got, Policies: []*v1alpha1.SegmentPolicy{}}); err != nil {
				t.Errorf("compile: %v", err)
			}
		})
	}
}

func TestAppProtocol(t *testing.T) {
	h2 := "tcp" // until the CRD knows http2
	if v1alpha1.IsKnownProtocol(v1alpha1.ProtocolHTTP2) {
		h2 = v1alpha1.ProtocolHTTP2
	}
	for in, want := range map[string]string{
		"redis": "redis", "HTTP": "http", "kubernetes.io/h2c": h2, "grpc": h2, "https": "tls",
		"postgresql": "postgres", "mysql": "mysql", "mongo": "mongodb", "kubernetes.io/ws": "http",
		"example.com/custom": "tcp", "": "tcp",
	} {
		if got := AppProtocol(in); got != want {
			t.Errorf("AppProtocol(%q) = %q, want %q", in, got, want)
		}
	}
}
