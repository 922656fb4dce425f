package inject_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/inject"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func settings() inject.Settings {
	return inject.Settings{ProxyImage: "example.invalid/bulkhead-proxy:test", XDSAddr: "bulkhead-controlplane.bulkhead-system.svc:15010", SystemNamespace: "bulkhead-system"}
}

func newWebhook(t *testing.T, s inject.Settings) *inject.Webhook {
	t.Helper()
	w, err := inject.New(s, quiet(), inject.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func appPod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-7d9f8b6c5d-",
			Labels:       map[string]string{"app": "web", "pod-template-hash": "7d9f8b6c5d"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8b6c5d", UID: "u1", Controller: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "example.invalid/migrate"}},
			Containers:     []corev1.Container{{Name: "app", Image: "example.invalid/app", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
		},
	}
}

func review(t *testing.T, ns string, p *corev1.Pod) admission.Request {
	t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: ns,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("no container %q", name)
	}
	return cs[i]
}

// CheckInjected fails unless p carries exactly one copy of the injection
// with the security settings the issue asks for. The envtest test uses it
// on stored pods too.
func checkInjected(t *testing.T, p *corev1.Pod, node string) {
	t.Helper()
	names := []string{}
	for _, c := range p.Spec.InitContainers {
		names = append(names, c.Name)
	}
	if names[0] != inject.InitName || names[1] != inject.ProxyName {
		t.Fatalf("init containers %v: want bulkhead-init, bulkhead-proxy first", names)
	}
	for _, n := range []string{inject.InitName, inject.ProxyName} {
		if c := slices.Index(names, n); slices.Index(names[c+1:], n) >= 0 {
			t.Fatalf("init containers %v: %s twice", names, n)
		}
	}
	if got := p.Annotations[inject.AnnotationNode]; got != node {
		t.Errorf("node annotation %q, want %q", got, node)
	}
	in := container(t, p.Spec.InitContainers, inject.InitName)
	sc := in.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged == nil || *sc.Privileged {
		t.Errorf("bulkhead-init security context %+v", sc)
	}
	if in.RestartPolicy != nil {
		t.Errorf("bulkhead-init is a sidecar")
	}
	if !slices.Contains(in.Args, "init") || !slices.ContainsFunc(in.Args, func(a string) bool { return strings.HasPrefix(a, "--exclude-ports=") && strings.Contains(a, "15090") }) {
		t.Errorf("bulkhead-init args %v: want init with the admin port excluded", in.Args)
	}
	px := container(t, p.Spec.InitContainers, inject.ProxyName)
	if px.RestartPolicy == nil || *px.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("bulkhead-proxy is not a native sidecar (restartPolicy %v)", px.RestartPolicy)
	}
	sc = px.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("bulkhead-proxy security context %+v", sc)
	}
	checkOutbound(t, in, px, 1337)
	if px.StartupProbe == nil || px.StartupProbe.HTTPGet == nil || px.StartupProbe.HTTPGet.Path != "/readyz" || px.StartupProbe.HTTPGet.Port.IntValue() != 15090 {
		t.Errorf("bulkhead-proxy startupProbe %+v: want GET /readyz on 15090", px.StartupProbe)
	}
	if px.ReadinessProbe == nil || px.ReadinessProbe.HTTPGet == nil || px.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("bulkhead-proxy readinessProbe %+v", px.ReadinessProbe)
	}
	if px.Resources.Requests.Cpu().IsZero() || px.Resources.Limits.Memory().IsZero() {
		t.Errorf("bulkhead-proxy resources %+v", px.Resources)
	}
	if len(px.Env) != 1 || px.Env[0].Name != inject.EnvNode || px.Env[0].ValueFrom == nil || px.Env[0].ValueFrom.FieldRef == nil ||
		px.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.annotations['bulkhead.io/node']" || !slices.Contains(px.Args, "--node=$(BULKHEAD_NODE)") {
		t.Errorf("bulkhead-proxy node id: env %+v args %v", px.Env, px.Args)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range px.VolumeMounts {
		mounts[m.Name] = m
	}
	if m := mounts[inject.VolumeToken]; !m.ReadOnly || m.MountPath != inject.TokenDir {
		t.Errorf("token mount %+v", m)
	}
	if m := mounts[inject.VolumeCA]; !m.ReadOnly || m.MountPath != inject.CADir {
		t.Errorf("CA mount %+v", m)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range p.Spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols[inject.VolumeToken]; v.Projected == nil || v.Projected.Sources[0].ServiceAccountToken == nil || v.Projected.Sources[0].ServiceAccountToken.Audience != "bulkhead" {
		t.Errorf("token volume %+v", v)
	}
	if v := vols[inject.VolumeCA]; v.ConfigMap == nil || v.ConfigMap.Name != inject.CAConfigMap || v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional {
		t.Errorf("CA volume %+v", v)
	}
	for _, c := range p.Spec.Containers {
		if c.Name == inject.ProxyName {
			t.Errorf("bulkhead-proxy among the application's containers")
		}
	}
}

// checkOutbound fails unless init captures outbound traffic with the
// proxy's uid excluded and the proxy serves it without a mark (the
// default Settings.Outbound).
func checkOutbound(t *testing.T, init, proxy corev1.Container, uid int) {
	t.Helper()
	for _, a := range []string{"--outbound", "--exclude-uid=" + strconv.Itoa(uid), "--outbound-port=15001", "--dns-port=15053"} {
		if !slices.Contains(init.Args, a) {
			t.Errorf("bulkhead-init args %v: no %s", init.Args, a)
		}
	}
	if slices.ContainsFunc(init.Args, func(a string) bool { return strings.HasPrefix(a, "--mark") }) {
		t.Errorf("bulkhead-init args %v: a mark (the proxy cannot set one)", init.Args)
	}
	for _, a := range []string{"--outbound", "--outbound-unmarked", "--outbound-addr=:15001"} {
		if !slices.Contains(proxy.Args, a) {
			t.Errorf("bulkhead-proxy args %v: no %s", proxy.Args, a)
		}
	}
	if sc := proxy.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != int64(uid) {
		t.Errorf("bulkhead-proxy does not run as the excluded uid %d: %+v", uid, sc)
	}
}

func TestInject(t *testing.T) {
	w := newWebhook(t, settings())
	p := appPod()
	if err := w.Inject(p, "web.shop"); err != nil {
		t.Fatal(err)
	}
	checkInjected(t, p, "web.shop")
	if got := p.Spec.InitContainers[2].Name; got != "migrate" {
		t.Errorf("the pod's own init container is third: got %q", got)
	}
	if in := container(t, p.Spec.InitContainers, inject.InitName); slices.ContainsFunc(in.Args, func(a string) bool { return strings.HasPrefix(a, "--envoy") }) {
		t.Errorf("bulkhead-init args %v: envoy ports without an Envoy sidecar", in.Args)
	}
}

// TestInjectOutboundOff: Settings.Outbound false injects inbound capture
// only, and a proxy without an outbound side; a custom uid is the one
// excluded.
func TestInjectOutboundOff(t *testing.T) {
	s := settings()
	s.Outbound = ptr.To(false)
	p := appPod()
	if err := newWebhook(t, s).Inject(p, "web.shop"); err != nil {
		t.Fatal(err)
	}
	in, px := container(t, p.Spec.InitContainers, inject.InitName), container(t, p.Spec.InitContainers, inject.ProxyName)
	for _, args := range [][]string{in.Args, px.Args} {
		if slices.ContainsFunc(args, func(a string) bool {
			return strings.HasPrefix(a, "--outbound") || strings.HasPrefix(a, "--exclude-uid")
		}) {
			t.Errorf("outbound off: args %v", args)
		}
	}
	s = settings()
	s.ProxyUID = 2000
	p = appPod()
	if err := newWebhook(t, s).Inject(p, "web.shop"); err != nil {
		t.Fatal(err)
	}
	checkOutbound(t, container(t, p.Spec.InitContainers, inject.InitName), container(t, p.Spec.InitContainers, inject.ProxyName), 2000)

	for yaml, want := range map[string]bool{"": true, "outbound: true\n": true, "outbound: false\n": false} {
		got, err := inject.ParseSettings([]byte("proxyImage: i\nxdsAddr: cp:15010\n" + yaml))
		if err != nil || (got.Outbound == nil || *got.Outbound) != want {
			t.Errorf("ParseSettings(%q): outbound %v, %v; want %v", yaml, got.Outbound, err, want)
		}
	}
}

// TestEnvoyPorts: with the Envoy sidecar, bulkhead-init sends the pod's
// HTTP ports to Envoy's inbound port: those the annotation lists, else the
// container ports named http*, http2* or grpc* (not https); none, a bad
// list or a port that is Bulkhead's or excluded refuse the pod.
func TestEnvoyPorts(t *testing.T) {
	s := settings()
	s.ExcludeInboundPorts = []uint16{9000}
	w := newWebhook(t, s)
	named := func(ports ...corev1.ContainerPort) *corev1.Pod {
		p := appPod()
		p.Annotations = map[string]string{inject.AnnotationSidecar: "envoy"}
		p.Spec.Containers[0].Ports = ports
		return p
	}
	annotated := func(v string) *corev1.Pod {
		p := named(corev1.ContainerPort{ContainerPort: 8080})
		p.Annotations[inject.AnnotationEnvoyPorts] = v
		return p
	}
	sidecar := named(corev1.ContainerPort{Name: "metrics", ContainerPort: 9100})
	sidecar.Spec.InitContainers = append(sidecar.Spec.InitContainers, corev1.Container{
		Name: "api", Image: "example.invalid/api", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 9090}},
	})
	sidecar.Spec.InitContainers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 7000}} // migrate: runs to completion
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want string // the --envoy-ports value; "error: …" = refused with that text
	}{
		{"named ports", named(
			corev1.ContainerPort{Name: "http", ContainerPort: 8080},
			corev1.ContainerPort{Name: "grpc-web", ContainerPort: 9090},
			corev1.ContainerPort{Name: "http2-api", ContainerPort: 8443},
			corev1.ContainerPort{Name: "https", ContainerPort: 443},
			corev1.ContainerPort{Name: "httpx", ContainerPort: 81},
			corev1.ContainerPort{Name: "http-udp", ContainerPort: 82, Protocol: corev1.ProtocolUDP},
			corev1.ContainerPort{Name: "redis", ContainerPort: 6379},
		), "8080,8443,9090"},
		{"native sidecar's port", sidecar, "9090"},
		{"annotation", annotated(" 9090, 8080,9090"), "8080,9090"},
		{"no http port", named(corev1.ContainerPort{ContainerPort: 8080}), "error: no port for Envoy"},
		{"empty annotation", annotated(""), "error: no port for Envoy"},
		{"bad annotation", annotated("8080,http"), `error: "http" is not a port`},
		{"port 0", annotated("0"), `error: "0" is not a port`},
		{"long annotation", annotated(strings.Repeat("8080,", 200)), "error: longer than"},
		{"admin port", annotated("15090"), "error: port 15090 cannot go to Envoy"},
		{"excluded port", annotated("9000"), "error: port 9000 cannot go to Envoy"},
		{"outbound port", annotated("8080,15001"), "error: port 15001 cannot go to Envoy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := w.Inject(tc.pod, "web.shop")
			if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Inject = %v, want an error with %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			in := container(t, tc.pod.Spec.InitContainers, inject.InitName)
			for _, a := range []string{"--envoy-ports=" + tc.want, "--envoy-port=15016"} {
				if !slices.Contains(in.Args, a) {
					t.Errorf("bulkhead-init args %v: no %s", in.Args, a)
				}
			}
		})
	}
}

func TestHandle(t *testing.T) {
	w := newWebhook(t, settings())
	ctx := context.Background()
	injected := appPod()
	if err := w.Inject(injected, "web.shop"); err != nil {
		t.Fatal(err)
	}
	optOut := appPod()
	optOut.Annotations = map[string]string{inject.AnnotationInject: "false"}
	host := appPod()
	host.Spec.HostNetwork = true
	bare := appPod()
	bare.OwnerReferences = nil
	bare.Labels = map[string]string{"app.kubernetes.io/name": "runner"}
	for _, tc := range []struct {
		name  string
		ns    string
		pod   *corev1.Pod
		patch bool
		node  string
	}{
		{"deployment pod", "shop", appPod(), true, "web.shop"},
		{"bare pod by app label", "shop", bare, true, "runner.shop"},
		{"opted out", "shop", optOut, false, ""},
		{"kube-system", "kube-system", appPod(), false, ""},
		{"bulkhead's namespace", "bulkhead-system", appPod(), false, ""},
		{"host network", "shop", host, false, ""},
		{"already injected", "shop", injected, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := w.Handle(ctx, review(t, tc.ns, tc.pod))
			if !r.Allowed {
				t.Fatalf("not allowed: %+v", r.Result)
			}
			if got := len(r.Patches) > 0; got != tc.patch {
				t.Fatalf("patched %v, want %v (%+v)", got, tc.patch, r.Result)
			}
			if !tc.patch {
				return
			}
			var node string
			for _, op := range r.Patches {
				if op.Path == "/metadata/annotations" {
					node = op.Value.(map[string]any)[inject.AnnotationNode].(string)
				}
				if op.Path == "/metadata/annotations/bulkhead.io~1node" {
					node = op.Value.(string)
				}
			}
			if node != tc.node {
				t.Errorf("node %q, want %q", node, tc.node)
			}
		})
	}
}

func TestEnvoySidecar(t *testing.T) {
	w := newWebhook(t, settings())
	p := appPod()
	p.Annotations = map[string]string{inject.AnnotationSidecar: "envoy"}
	p.Spec.Containers[0].Ports[0].Name = "http"
	if err := w.Inject(p, "web.shop"); err != nil {
		t.Fatal(err)
	}
	checkInjected(t, p, "web.shop")
	e := container(t, p.Spec.InitContainers, inject.EnvoyName)
	if e.RestartPolicy == nil || *e.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("envoy is not a native sidecar")
	}
	// Envoy runs as the proxy's user: init's outbound capture leaves its
	// connections (to the control plane, to the workload) alone.
	if sc := e.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1337 {
		t.Errorf("envoy security context %+v: want the excluded uid 1337", sc)
	}
	if in := container(t, p.Spec.InitContainers, inject.InitName); !slices.Contains(in.Args, "--envoy-ports=8080") {
		t.Errorf("bulkhead-init args %v: the http port 8080 does not go to Envoy", in.Args)
	}
	i := slices.Index(e.Args, "--config-yaml")
	if i < 0 {
		t.Fatalf("envoy args %v: no --config-yaml", e.Args)
	}
	var boot struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	if err := json.Unmarshal([]byte(e.Args[i+1]), &boot); err != nil || boot.Node.ID != "web.shop" {
		t.Errorf("envoy bootstrap node %q (%v)", boot.Node.ID, err)
	}
	bad := appPod()
	bad.Annotations = map[string]string{inject.AnnotationSidecar: "nginx"}
	r := w.Handle(context.Background(), review(t, "shop", bad))
	if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, "bulkhead.io/sidecar") {
		t.Errorf("bad sidecar annotation: %+v", r.Result)
	}
}

func TestSettingsValidate(t *testing.T) {
	for name, s := range map[string]inject.Settings{
		"no image":       {XDSAddr: "cp:15010"},
		"no xds address": {ProxyImage: "i"},
		"xds no port":    {ProxyImage: "i", XDSAddr: "cp"},
		"bad log level":  {ProxyImage: "i", XDSAddr: "cp:15010", LogLevel: "loud"},
		"negative uid":   {ProxyImage: "i", XDSAddr: "cp:15010", ProxyUID: -1},
	} {
		if _, err := inject.New(s, quiet(), inject.Options{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestBadReview(t *testing.T) {
	w := newWebhook(t, settings())
	req := review(t, "shop", appPod())
	req.Object.Raw = []byte(`{"spec": 7}`)
	if r := w.Handle(context.Background(), req); r.Allowed || r.Result.Code != 400 {
		t.Errorf("undecodable pod: %+v", r.Result)
	}
}
