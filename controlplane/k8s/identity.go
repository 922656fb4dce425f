package k8s

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Annotations and labels Bulkhead reads.
const (
	// AnnotationSidecar on a pod names the xDS consumer besides
	// bulkhead-proxy: identity.SidecarEnvoy or identity.SidecarGRPC.
	AnnotationSidecar = "bulkhead.io/sidecar"
	// LabelMode on a Namespace sets the default mode of its segments.
	LabelMode = "bulkhead.io/mode"
)

// perPodLabels are labels that differ from pod to pod of one workload (or
// from rollout to rollout); they are not the workload's.
var perPodLabels = []string{
	appsv1.DefaultDeploymentUniqueLabelKey, // pod-template-hash
	appsv1.ControllerRevisionHashLabelKey,  // controller-revision-hash
	appsv1.StatefulSetPodNameLabel,         // statefulset.kubernetes.io/pod-name
	appsv1.PodIndexLabel,                   // apps.kubernetes.io/pod-index
	batchv1.ControllerUidLabel, "controller-uid",
	batchv1.JobNameLabel, "job-name",
	batchv1.JobCompletionIndexAnnotation,
}

// owner kinds, in the order that decides which keeps a name two kinds share.
var ownerOrder = []string{"Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job", "ReplicaSet", "Pod"}

type ownerKey struct{ ns, kind, name string }

// group is the pods of one owning workload.
type group struct {
	key  ownerKey
	pods []*corev1.Pod
}

// facts are the objects workloads are derived from.
type facts struct {
	pods        []*corev1.Pod
	replicaSets map[string]*appsv1.ReplicaSet // by "ns/name"
	jobs        map[string]*batchv1.Job
	services    []*corev1.Service
}

// workloads derives the workloads from the facts: one per owning workload
// (Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet without a
// Deployment, or a bare pod), with the IPs of its running pods, the labels
// all of them share (per-pod labels left out), the ports their containers
// declare with the protocol a Service's appProtocol gives them, and the
// segment named after the owner. Sorted by namespace and name; IPs unique
// (a reused IP belongs to the pod not being deleted, else the newest).
func workloads(f facts) []identity.Workload {
	// An IP belongs to one pod only.
	ipOwner := make(map[netip.Addr]*corev1.Pod)
	var live []*corev1.Pod
	for _, p := range f.pods {
		if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if len(podIPs(p)) == 0 {
			continue
		}
		live = append(live, p)
		for _, ip := range podIPs(p) {
			if o, ok := ipOwner[ip]; !ok || newerPod(p, o) {
				ipOwner[ip] = p
			}
		}
	}
	groups := make(map[ownerKey]*group)
	for _, p := range live {
		k := ownerOf(p, f)
		g := groups[k]
		if g == nil {
			g = &group{key: k}
			groups[k] = g
		}
		g.pods = append(g.pods, p)
	}
	keys := make([]ownerKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b ownerKey) int {
		return cmp.Or(strings.Compare(a.ns, b.ns), cmp.Compare(slices.Index(ownerOrder, a.kind), slices.Index(ownerOrder, b.kind)), strings.Compare(a.kind, b.kind), strings.Compare(a.name, b.name))
	})
	taken := make(map[string]bool) // "ns/name"
	var out []identity.Workload
	for _, k := range keys {
		g := groups[k]
		slices.SortFunc(g.pods, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
		name := dnsLabel(k.name)
		if taken[k.ns+"/"+name] {
			name = dnsLabel(k.name + "-" + strings.ToLower(k.kind))
		}
		taken[k.ns+"/"+name] = true
		w := identity.Workload{Name: name, Namespace: k.ns, Segment: name}
		for _, p := range g.pods {
			for _, ip := range podIPs(p) {
				if ipOwner[ip] == p {
					w.IPs = append(w.IPs, ip)
				}
			}
			if w.Sidecar == "" {
				switch s := p.Annotations[AnnotationSidecar]; s {
				case identity.SidecarEnvoy, identity.SidecarGRPC:
					w.Sidecar = s
				}
			}
		}
		if len(w.IPs) == 0 {
			continue
		}
		slices.SortFunc(w.IPs, func(a, b netip.Addr) int { return a.Compare(b) })
		w.IPs = slices.Compact(w.IPs)
		w.Labels = sharedLabels(g.pods)
		w.Ports = ports(g.pods, f.services)
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b identity.Workload) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

func podIPs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	add := func(s string) {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
			ip = ip.Unmap()
			if !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	add(p.Status.PodIP)
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	return out
}

// newerPod reports whether a should own an IP that b also claims: a pod
// not being deleted wins, else the newer one, else the first by name.
func newerPod(a, b *corev1.Pod) bool {
	if (a.DeletionTimestamp == nil) != (b.DeletionTimestamp == nil) {
		return a.DeletionTimestamp == nil
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// ownerOf follows a pod's controller references to the workload people
// name: ReplicaSet → Deployment, Job → CronJob. A ReplicaSet not (yet) in
// the cache is taken for its Deployment when its name is the pod template
// hash's prefix. A bare pod is named by its app.kubernetes.io/name or app
// label when that is a DNS label, so that pods of CI runners and the like
// share one segment.
func ownerOf(p *corev1.Pod, f facts) ownerKey {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		for _, l := range []string{"app.kubernetes.io/name", "app"} {
			if v := p.Labels[l]; v != "" && len(validation.IsDNS1123Label(v)) == 0 {
				return ownerKey{p.Namespace, "Pod", v}
			}
		}
		return ownerKey{p.Namespace, "Pod", p.Name}
	}
	switch ref.Kind {
	case "ReplicaSet":
		if rs, ok := f.replicaSets[p.Namespace+"/"+ref.Name]; ok {
			if o := metav1.GetControllerOf(rs); o != nil && o.Kind == "Deployment" {
				return ownerKey{p.Namespace, "Deployment", o.Name}
			}
			return ownerKey{p.Namespace, "ReplicaSet", ref.Name}
		}
		if h := p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; h != "" {
			if d, ok := strings.CutSuffix(ref.Name, "-"+h); ok && d != "" {
				return ownerKey{p.Namespace, "Deployment", d}
			}
		}
		return ownerKey{p.Namespace, "ReplicaSet", ref.Name}
	case "Job":
		if j, ok := f.jobs[p.Namespace+"/"+ref.Name]; ok {
			if o := metav1.GetControllerOf(j); o != nil && o.Kind == "CronJob" {
				return ownerKey{p.Namespace, "CronJob", o.Name}
			}
		}
		return ownerKey{p.Namespace, "Job", ref.Name}
	}
	return ownerKey{p.Namespace, ref.Kind, ref.Name}
}

// sharedLabels returns the labels every pod has with the same value, but
// the per-pod ones.
func sharedLabels(pods []*corev1.Pod) map[string]string {
	out := make(map[string]string)
	for k, v := range pods[0].Labels {
		out[k] = v
	}
	for _, p := range pods[1:] {
		for k, v := range out {
			if pv, ok := p.Labels[k]; !ok || pv != v {
				delete(out, k)
			}
		}
	}
	for _, k := range perPodLabels {
		delete(out, k)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// ports returns the TCP ports the pods' containers declare, and the ports
// Services that select them target, with the protocol each Service port's
// appProtocol names ("tcp" otherwise). Services are taken by name; the
// first protocol other than tcp a port gets is kept.
func ports(pods []*corev1.Pod, services []*corev1.Service) []identity.Port {
	byPort := make(map[uint16]string)
	set := func(port int32, proto string) {
		if port < 1 || port > 65535 {
			return
		}
		if old, ok := byPort[uint16(port)]; !ok || (old == v1alpha1.ProtocolTCP && proto != v1alpha1.ProtocolTCP) {
			byPort[uint16(port)] = proto
		}
	}
	for _, p := range pods {
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP {
					set(cp.ContainerPort, v1alpha1.ProtocolTCP)
				}
			}
		}
	}
	for _, s := range services {
		if len(s.Spec.Selector) == 0 || s.Namespace != pods[0].Namespace {
			continue
		}
		sel := labels.SelectorFromSet(s.Spec.Selector)
		for _, p := range pods {
			if !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			for _, sp := range s.Spec.Ports {
				if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
					continue
				}
				proto := v1alpha1.ProtocolTCP
				if sp.AppProtocol != nil {
					proto = AppProtocol(*sp.AppProtocol)
				}
				set(targetPort(p, sp), proto)
			}
		}
	}
	out := make([]identity.Port, 0, len(byPort))
	for port, proto := range byPort {
		out = append(out, identity.Port{Port: port, Protocol: proto})
	}
	slices.SortFunc(out, func(a, b identity.Port) int { return cmp.Compare(a.Port, b.Port) })
	if len(out) == 0 {
		return nil
	}
	return out
}

func targetPort(p *corev1.Pod, sp corev1.ServicePort) int32 {
	switch {
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.StrVal {
					return cp.ContainerPort
				}
			}
		}
		return 0
	case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0:
		return sp.TargetPort.IntVal
	}
	return sp.Port
}

// AppProtocol maps a Service port's appProtocol to a Bulkhead protocol:
// Bulkhead's own names as they are, the IANA and Kubernetes names of the
// same protocols (kubernetes.io/h2c and grpc: http2, https and
// kubernetes.io/wss: tls, kubernetes.io/ws: http, postgresql: postgres,
// mongo: mongodb), "tcp" for anything else and for protocols the CRD does
// not know yet (v1alpha1.IsKnownProtocol).
func AppProtocol(ap string) string {
	if p := appProtocol(strings.ToLower(ap)); v1alpha1.IsKnownProtocol(p) {
		return p
	}
	return v1alpha1.ProtocolTCP
}

func appProtocol(ap string) string {
	switch ap {
	case "kubernetes.io/h2c", "grpc", "h2c":
		return v1alpha1.ProtocolHTTP2
	case "https", "kubernetes.io/wss":
		return v1alpha1.ProtocolTLS
	case "kubernetes.io/ws", "http/1.1":
		return v1alpha1.ProtocolHTTP
	case "postgresql":
		return v1alpha1.ProtocolPostgres
	case "mongo":
		return v1alpha1.ProtocolMongoDB
	}
	return ap
}

// dnsLabel makes a Kubernetes object name (a DNS subdomain, up to 253
// characters) a DNS label: dots become dashes, and a name over 63
// characters keeps its first 54 and a hash of the whole.
func dnsLabel(s string) string {
	l := strings.ReplaceAll(s, ".", "-")
	if len(l) <= validation.DNS1123LabelMaxLength {
		return l
	}
	sum := sha256.Sum256([]byte(s))
	return strings.TrimRight(l[:54], "-") + "-" + hex.EncodeToString(sum[:4])
}
