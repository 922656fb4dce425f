package inject_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/inject"
	"github.com/bulkhead-io/bulkhead/controlplane/k8s"
	"github.com/bulkhead-io/bulkhead/test/kube"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const webhookName = "bulkhead-inject"

// mwc is the MutatingWebhookConfiguration of deploy/, pointing at a URL
// instead of the Service (envtest's API server runs on the host).
func mwc(url string) *admissionregistrationv1.MutatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: webhookName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.bulkhead.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			ReinvocationPolicy:      &never,
			TimeoutSeconds:          ptr.To(int32(10)),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
			}},
			NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{inject.LabelInject: "enabled"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "bulkhead-system"},
				}},
			},
		}},
	}
}

// TestWebhook registers the webhook with a real API server, serving TLS
// from the certificate Certs issues, and creates pods through it.
func TestWebhook(t *testing.T) {
	env := kube.Start(t)
	log := quiet()
	scheme, err := k8s.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	for _, ns := range []struct {
		name   string
		labels map[string]string
	}{{"shop", map[string]string{inject.LabelInject: "enabled"}}, {"plain", nil}, {"bulkhead-system", map[string]string{inject.LabelInject: "enabled"}}} {
		mustCreate(t, ctx, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.name, Labels: ns.labels}})
	}
	// kube-system exists; label it as a careless operator might.
	var ks corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: "kube-system"}, &ks); err != nil {
		t.Fatal(err)
	}
	ks.Labels[inject.LabelInject] = "enabled"
	if err := c.Update(ctx, &ks); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String() + inject.Path
	mustCreate(t, ctx, c, mwc(url))

	// Run wires it all: Certs (CA Secret, serving certificate, caBundle),
	// the Webhook and its TLS server, as bulkhead-controlplane does.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rc := inject.RunConfig{Settings: settings(), Listener: ln, CertOptions: inject.CertOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}}
		if err := inject.Run(ctx, env.Config, rc, log); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got admissionregistrationv1.MutatingWebhookConfiguration
		if err := c.Get(ctx, client.ObjectKey{Name: webhookName}, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Webhooks[0].ClientConfig.CABundle) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("caBundle not patched within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	t.Run("caBundle patched", func(t *testing.T) {
		var got admissionregistrationv1.MutatingWebhookConfiguration
		if err := c.Get(ctx, client.ObjectKey{Name: webhookName}, &got); err != nil {
			t.Fatal(err)
		}
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: "bulkhead-system", Name: "bulkhead-webhook-ca"}, &s); err != nil {
			t.Fatal(err)
		}
		bundle := got.Webhooks[0].ClientConfig.CABundle
		if len(bundle) == 0 || !bytes.Equal(bundle, s.Data[inject.SecretCABundle]) {
			t.Fatalf("caBundle %q, want the Secret's bundle", bundle)
		}
		// The serving certificate verifies against the caBundle.
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(bundle)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
		resp, err := hc.Get(strings.TrimSuffix(url, inject.Path) + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("healthz: %s", resp.Status)
		}
	})

	t.Run("deployment pod injected once", func(t *testing.T) {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: appPod().Spec},
			},
		}
		mustCreate(t, ctx, c, d)
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-5f6c7d8e9a", Labels: map[string]string{"app": "web", "pod-template-hash": "5f6c7d8e9a"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: d.UID, Controller: ptr.To(true)}}},
			Spec: appsv1.ReplicaSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "pod-template-hash": "5f6c7d8e9a"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "pod-template-hash": "5f6c7d8e9a"}}, Spec: appPod().Spec},
			},
		}
		mustCreate(t, ctx, c, rs)
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", GenerateName: "web-5f6c7d8e9a-", Labels: rs.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}},
			Spec: appPod().Spec}
		mustCreate(t, ctx, c, p)
		var stored corev1.Pod
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), &stored); err != nil {
			t.Fatal(err)
		}
		checkInjected(t, &stored, "web.shop")
		if n := len(stored.Spec.InitContainers); n != 3 {
			t.Errorf("%d init containers, want bulkhead-init, bulkhead-proxy, migrate", n)
		}

		// The same pod, already injected, created again: unchanged.
		again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-again", Labels: stored.Labels, Annotations: stored.Annotations}, Spec: *stored.Spec.DeepCopy()}
		again.Spec.NodeName = ""
		mustCreate(t, ctx, c, again)
		var second corev1.Pod
		if err := c.Get(ctx, client.ObjectKeyFromObject(again), &second); err != nil {
			t.Fatal(err)
		}
		checkInjected(t, &second, "web.shop")
		if len(second.Spec.InitContainers) != len(stored.Spec.InitContainers) || len(second.Spec.Volumes) != len(stored.Spec.Volumes) {
			t.Errorf("second admission changed the pod: %d init containers, %d volumes; want %d, %d",
				len(second.Spec.InitContainers), len(second.Spec.Volumes), len(stored.Spec.InitContainers), len(stored.Spec.Volumes))
		}
	})

	t.Run("envoy pod: http ports to envoy, outbound captured", func(t *testing.T) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api", Labels: map[string]string{"app": "api"},
			Annotations: map[string]string{inject.AnnotationSidecar: "envoy"}}, Spec: appPod().Spec}
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http-api", ContainerPort: 8080}, {Name: "grpc", ContainerPort: 9090}, {Name: "redis", ContainerPort: 6379}}
		mustCreate(t, ctx, c, p)
		var stored corev1.Pod
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), &stored); err != nil {
			t.Fatal(err)
		}
		checkInjected(t, &stored, "api.shop")
		in := container(t, stored.Spec.InitContainers, inject.InitName)
		if !slices.Contains(in.Args, "--envoy-ports=8080,9090") || !slices.Contains(in.Args, "--envoy-port=15016") {
			t.Errorf("bulkhead-init args %v: want 8080 and 9090 sent to envoy's 15016", in.Args)
		}
		container(t, stored.Spec.InitContainers, inject.EnvoyName)

		// An Envoy pod without an HTTP port is refused with the reason.
		bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-bad",
			Annotations: map[string]string{inject.AnnotationSidecar: "envoy"}}, Spec: appPod().Spec}
		err := c.Create(ctx, bad)
		if err == nil || !strings.Contains(err.Error(), inject.AnnotationEnvoyPorts) {
			t.Errorf("create an envoy pod without http ports: %v, want refused naming %s", err, inject.AnnotationEnvoyPorts)
		}
	})

	t.Run("job of a cronjob and statefulset pods", func(t *testing.T) {
		cj := &batchv1.CronJob{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "nightly"},
			Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				Template: corev1.PodTemplateSpec{Spec: withRestart(appPod().Spec, corev1.RestartPolicyNever)},
			}}},
		}
		mustCreate(t, ctx, c, cj)
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "nightly-29400180",
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID, Controller: ptr.To(true)}}},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"batch.kubernetes.io/job-name": "nightly-29400180"}},
				Spec:       withRestart(appPod().Spec, corev1.RestartPolicyNever),
			}},
		}
		// envtest's API server has no controller manager; the Job's
		// selector and labels are set by the API server itself.
		mustCreate(t, ctx, c, job)
		jp := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", GenerateName: "nightly-29400180-", Labels: job.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: ptr.To(true)}}},
			Spec: withRestart(appPod().Spec, corev1.RestartPolicyNever)}
		mustCreate(t, ctx, c, jp)
		var stored corev1.Pod
		if err := c.Get(ctx, client.ObjectKeyFromObject(jp), &stored); err != nil {
			t.Fatal(err)
		}
		checkInjected(t, &stored, "nightly.shop")

		sts := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"},
			Spec: appsv1.StatefulSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}}, Spec: appPod().Spec},
			},
		}
		mustCreate(t, ctx, c, sts)
		sp := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-0", Labels: map[string]string{"app": "db", "statefulset.kubernetes.io/pod-name": "db-0"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: sts.Name, UID: sts.UID, Controller: ptr.To(true)}}},
			Spec: appPod().Spec}
		mustCreate(t, ctx, c, sp)
		if err := c.Get(ctx, client.ObjectKeyFromObject(sp), &stored); err != nil {
			t.Fatal(err)
		}
		checkInjected(t, &stored, "db.shop")
	})

	untouched := func(t *testing.T, ns string, annotations map[string]string) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app", Annotations: annotations}, Spec: appPod().Spec}
		mustCreate(t, ctx, c, p)
		var stored corev1.Pod
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), &stored); err != nil {
			t.Fatal(err)
		}
		if len(stored.Spec.InitContainers) != 1 || stored.Annotations[inject.AnnotationInjected] != "" {
			t.Errorf("pod of %s injected: %d init containers, annotations %v", ns, len(stored.Spec.InitContainers), stored.Annotations)
		}
	}
	t.Run("opt-out annotation", func(t *testing.T) { untouched(t, "shop", map[string]string{inject.AnnotationInject: "false"}) })
	t.Run("unlabelled namespace", func(t *testing.T) { untouched(t, "plain", nil) })
	t.Run("kube-system", func(t *testing.T) { untouched(t, "kube-system", nil) })
	t.Run("bulkhead's namespace", func(t *testing.T) { untouched(t, "bulkhead-system", nil) })

	t.Run("namespace label checked by the webhook too", func(t *testing.T) {
		w, err := inject.New(settings(), log, inject.Options{Reader: c})
		if err != nil {
			t.Fatal(err)
		}
		if r := w.Handle(ctx, review(t, "plain", appPod())); !r.Allowed || len(r.Patches) > 0 {
			t.Errorf("unlabelled namespace: allowed %v, %d patches", r.Allowed, len(r.Patches))
		}
		if r := w.Handle(ctx, review(t, "shop", appPod())); !r.Allowed || len(r.Patches) == 0 {
			t.Errorf("labelled namespace: allowed %v, %d patches", r.Allowed, len(r.Patches))
		}
		if r := w.Handle(ctx, review(t, "absent", appPod())); r.Allowed {
			t.Error("namespace that cannot be read: allowed")
		}
	})
	t.Run("rotation", func(t *testing.T) { testRotation(t, ctx, c) })
}

// testRotation runs Certs on a clock it moves, with short lifetimes: the
// serving certificate is renewed, then the CA, whose predecessor stays in
// the caBundle while it is valid; cert-manager's annotation stops patching.
func testRotation(t *testing.T, ctx context.Context, c client.Client) {
	const name = "bulkhead-inject-rotation"
	mustCreate(t, ctx, c, func() *admissionregistrationv1.MutatingWebhookConfiguration {
		m := mwc("https://127.0.0.1:1/inject")
		m.Name = name
		m.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"never": "matches"}}
		return m
	}())
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	certs, err := inject.NewCerts(c, quiet(), inject.CertOptions{
		Namespace: "bulkhead-system", Secret: "rotation-ca", Webhook: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		CALifetime: 30 * time.Second, CertLifetime: 9 * time.Second, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	bundle := func() []*x509.Certificate {
		t.Helper()
		var m admissionregistrationv1.MutatingWebhookConfiguration
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &m); err != nil {
			t.Fatal(err)
		}
		var out []*x509.Certificate
		for rest := m.Webhooks[0].ClientConfig.CABundle; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				return out
			}
			x, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, x)
		}
	}
	verify := func(roots []*x509.Certificate) error {
		pool := x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		_, err := certs.Leaf().Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now})
		return err
	}
	ensure := func() {
		t.Helper()
		if err := certs.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ensure()
	first := certs.Leaf()
	ca1 := bundle()
	if len(ca1) != 1 || verify(ca1) != nil {
		t.Fatalf("first round: %d CAs in the bundle, verify: %v", len(ca1), verify(ca1))
	}
	now = now.Add(5 * time.Second) // before 2/3 of 9s
	ensure()
	if certs.Leaf() != first {
		t.Fatal("certificate renewed too early")
	}
	now = now.Add(2 * time.Second) // 7s: past 2/3
	ensure()
	if certs.Leaf().SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("certificate not renewed after 2/3 of its lifetime")
	}
	now = now.Add(14 * time.Second) // 21s: the CA (30s) is past 2/3
	ensure()
	cas := bundle()
	if len(cas) != 2 || cas[1].SerialNumber.Cmp(ca1[0].SerialNumber) != 0 || cas[0].SerialNumber.Cmp(ca1[0].SerialNumber) == 0 {
		t.Fatalf("after CA rotation: bundle of %d CAs, want the new CA then the old one", len(cas))
	}
	if err := verify(cas[:1]); err != nil {
		t.Fatalf("serving certificate not issued by the new CA: %v", err)
	}
	now = now.Add(12 * time.Second) // the old CA expired
	ensure()
	if cas := bundle(); len(cas) != 1 {
		t.Fatalf("expired CA still in the bundle: %d CAs", len(cas))
	}

	// cert-manager's CA injector owns the bundle once annotated.
	var m admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &m); err != nil {
		t.Fatal(err)
	}
	m.Annotations = map[string]string{inject.AnnotationCertManager: "bulkhead-system/bulkhead-webhook"}
	m.Webhooks[0].ClientConfig.CABundle = []byte("cert-manager's")
	if err := c.Update(ctx, &m); err != nil {
		t.Fatal(err)
	}
	now = now.Add(20 * time.Second)
	ensure()
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &m); err != nil {
		t.Fatal(err)
	}
	if string(m.Webhooks[0].ClientConfig.CABundle) != "cert-manager's" {
		t.Errorf("caBundle patched despite %s", inject.AnnotationCertManager)
	}
}

func withRestart(s corev1.PodSpec, p corev1.RestartPolicy) corev1.PodSpec {
	s.RestartPolicy = p
	return s
}

func mustCreate(t *testing.T, ctx context.Context, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}
