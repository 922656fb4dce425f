package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/bulkhead-io/bulkhead/test/kube"
)

// TestKubeAuth checks the Kubernetes authenticator against a real API
// server: service-account tokens from the TokenRequest API, RBAC Roles and
// RoleBindings in two namespaces, and WithAuth's answers per verb and
// namespace.
func TestKubeAuth(t *testing.T) {
	env := kube.Start(t)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"team-a", "team-b"} {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		must(err)
	}
	// reader: read policies and flows in team-a; operator: also patch and
	// update them there.
	roles := map[string][]rbacv1.PolicyRule{
		"reader": {
			{APIGroups: []string{Group}, Resources: []string{Resource}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{Group}, Resources: []string{Resource + "/" + SubresourceFlows}, Verbs: []string{"get"}},
		},
		"operator": {
			{APIGroups: []string{Group}, Resources: []string{Resource}, Verbs: []string{"get", "list", "patch", "update"}},
		},
	}
	tokens := map[string]string{}
	for name, rules := range roles {
		_, err := cs.CoreV1().ServiceAccounts("team-a").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		must(err)
		_, err = cs.RbacV1().Roles("team-a").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
		must(err)
		_, err = cs.RbacV1().RoleBindings("team-a").Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: "team-a"}},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		}, metav1.CreateOptions{})
		must(err)
		tr, err := cs.CoreV1().ServiceAccounts("team-a").CreateToken(ctx, name, &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
		}, metav1.CreateOptions{})
		must(err)
		tokens[name] = tr.Status.Token
	}

	ka := NewKubeAuth(cs, KubeAuthOptions{})
	u, err := ka.Authenticate(ctx, tokens["reader"])
	if err != nil || u.Name != "system:serviceaccount:team-a:reader" {
		t.Fatalf("Authenticate(reader): %+v, %v", u, err)
	}
	if _, err := ka.Authenticate(ctx, "not-a-token-at-all"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("Authenticate(garbage): %v, want ErrUnauthenticated", err)
	}
	if err := ka.Authorize(ctx, u, Access{Verb: "patch", Namespace: "team-a"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("reader patch: %v, want ErrForbidden", err)
	}

	// Answers are cached for the TTL: a role binding removed takes effect
	// after it.
	clk := time.Now()
	cachedAuth := NewKubeAuth(cs, KubeAuthOptions{Now: func() time.Time { return clk }})
	defer func() {
		if t.Failed() {
			return
		}
		ru, err := cachedAuth.Authenticate(ctx, tokens["reader"])
		must(err)
		get := Access{Verb: "get", Namespace: "team-a"}
		must(cachedAuth.Authorize(ctx, ru, get))
		must(cs.RbacV1().RoleBindings("team-a").Delete(ctx, "reader", metav1.DeleteOptions{}))
		if err := cachedAuth.Authorize(ctx, ru, get); err != nil {
			t.Errorf("within the TTL: %v, want the cached allow", err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			clk = clk.Add(11 * time.Second)
			err := cachedAuth.Authorize(ctx, ru, get)
			if errors.Is(err, ErrForbidden) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the TTL: %v, want ErrForbidden", err)
			}
		}
	}()

	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"ok": "yes"}) })
	srv := httptest.NewServer(WithAuth(ok, ka, AuthOptions{}))
	defer srv.Close()
	policy := func(nss ...string) []byte {
		var b []byte
		for i, ns := range nss {
			b = fmt.Appendf(b, "---\napiVersion: bulkhead.io/v1alpha1\nkind: SegmentPolicy\nmetadata: {name: p%d, namespace: %s}\n", i, ns)
		}
		return b
	}
	for _, c := range []struct {
		name, who, method, path string
		body                    []byte
		want                    int
	}{
		{"no token", "", "GET", "/v1/policies/export?namespace=team-a", nil, 401},
		{"bad token", "bad", "GET", "/v1/policies/export?namespace=team-a", nil, 401},
		{"reader exports team-a", "reader", "GET", "/v1/policies/export?namespace=team-a", nil, 200},
		{"reader exports team-b", "reader", "GET", "/v1/policies/export?namespace=team-b", nil, 403},
		{"reader lists all", "reader", "GET", "/v1/policies", nil, 403},
		{"reader flows team-a", "reader", "GET", "/v1/flows?segment=team-a/web", nil, 200},
		{"reader flows team-b", "reader", "GET", "/v1/violations?segment=team-b", nil, 403},
		{"reader sets a mode", "reader", "PUT", "/v1/segments/team-a/web/mode", []byte(`{"mode":"protect"}`), 403},
		{"reader applies", "reader", "POST", "/v1/policies/apply", policy("team-a"), 403},
		{"operator sets a mode", "operator", "PUT", "/v1/segments/team-a/web/mode", []byte(`{"mode":"protect"}`), 200},
		{"operator sets team-b's mode", "operator", "PUT", "/v1/segments/team-b/web/mode", []byte(`{"mode":"protect"}`), 403},
		{"operator applies team-a", "operator", "POST", "/v1/policies/apply", policy("team-a", "team-a"), 200},
		{"operator applies team-a and team-b", "operator", "POST", "/v1/policies/apply", policy("team-a", "team-b"), 403},
		{"operator reads flows", "operator", "GET", "/v1/flows?segment=team-a", nil, 403},
		{"healthz open", "", "GET", "/healthz", nil, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok := tokens[c.who]
			if c.who == "bad" {
				tok = "eyJhbGciOiJSUzI1NiJ9.e30.AAAA"
			}
			code, _, e := send(t, c.method, srv.URL+c.path, tok, c.body)
			if code != c.want {
				t.Errorf("%d %q, want %d", code, e.Error, c.want)
			}
		})
	}
}
