package ca

import (
	"context"
	"errors"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/bulkhead-io/bulkhead/test/kube"
)

// TestTokenReview runs on a real API server: a projected token of audience
// bulkhead bound to pod redis-0 (annotated node redis.team-a) obtains
// redis.team-a and nothing else; a token of another audience, one not bound
// to a pod, one of another namespace and one whose pod was replaced are
// refused.
func TestTokenReview(t *testing.T) {
	env := kube.Start(t)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	pods := map[string]*corev1.Pod{}
	for _, ns := range []string{"team-a", "team-b"} {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		must(err)
		_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{})
		must(err)
		p, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "redis-0", Annotations: map[string]string{AnnotationNode: "redis." + ns}},
			Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "redis", Image: "redis"}}},
		}, metav1.CreateOptions{})
		must(err)
		pods[ns] = p
	}
	token := func(ns, audience string, pod *corev1.Pod) string {
		t.Helper()
		spec := authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](600)}
		if pod != nil {
			spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authnv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
		must(err)
		return tr.Status.Token
	}
	r := NewTokenReview(cs, "", nil)
	good := token("team-a", Audience, pods["team-a"])
	if err := r.Authenticate(ctx, "redis.team-a", good); err != nil {
		t.Fatalf("its own node: %v", err)
	}
	for _, tc := range []struct {
		name, node, token string
	}{
		{"another workload", "cart.team-a", good},
		{"another namespace", "redis.team-b", good},
		{"another audience", "redis.team-a", token("team-a", "kubernetes", pods["team-a"])},
		{"not bound to a pod", "redis.team-a", token("team-a", Audience, nil)},
		{"garbage", "redis.team-a", "not-a-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.Authenticate(ctx, tc.node, tc.token); !errors.Is(err, ErrDenied) {
				t.Errorf("Authenticate: %v, want ErrDenied", err)
			}
		})
	}
	// A replaced pod: same name, new uid; the old pod's token is refused
	// (the API server already refuses tokens of deleted pods; PodAnnotation
	// checks the uid too).
	must(cs.CoreV1().Pods("team-a").Delete(ctx, "redis-0", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}))
	if err := r.Authenticate(ctx, "redis.team-a", good); !errors.Is(err, ErrDenied) {
		t.Errorf("the deleted pod's token: %v, want ErrDenied", err)
	}
}
