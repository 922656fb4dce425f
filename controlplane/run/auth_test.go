package run

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	kubetest "github.com/bulkhead-io/bulkhead/test/kube"
)

// syncBuffer is a log sink safe for the control plane's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startRun runs the control plane with cfg until the test ends and returns
// the admin URL.
func startRun(t *testing.T, cfg Config, log *slog.Logger) string {
	t.Helper()
	ready := make(chan Addrs, 1)
	cfg.GRPCListener, cfg.AdminListener = listen(t), listen(t)
	cfg.Ready = func(a Addrs) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case a := <-ready:
		return "http://" + a.Admin.String()
	case err := <-done:
		t.Fatalf("Run: %v", err)
		return ""
	}
}

// TestRunAdminToken: on first start the control plane creates
// <state>/admin-token (0600); the CLI finds it with --state-dir; without it
// the API answers 401, and a second start keeps the token.
func TestRunAdminToken(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	base := startRun(t, Config{StateDir: state}, testLog(t))
	path := filepath.Join(state, TokenFileName)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token: %v %v", fi, err)
	}
	first, _ := os.ReadFile(path)

	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := cli.Execute(context.Background(), append([]string{"--server", base}, args...),
			cli.Streams{In: strings.NewReader(""), Out: &out, Err: &out})
		return code, out.String()
	}
	if code, out := run("mode", "get", "-A"); code == 0 || !strings.Contains(out, "401") {
		t.Errorf("CLI without a token: exit %d\n%s", code, out)
	}
	if code, out := run("--state-dir", state, "mode", "set", "web", "monitor", "-n", "demo"); code != 0 {
		t.Errorf("CLI with --state-dir: exit %d\n%s", code, out)
	}
	if code, out := run("--token-file", path, "mode", "get", "-n", "demo"); code != 0 || !strings.Contains(out, "monitor") {
		t.Errorf("CLI with --token-file: exit %d\n%s", code, out)
	}
	t.Setenv("BULKHEAD_TOKEN", "wrong-wrong-wrong-wrong")
	if code, out := run("mode", "get", "-n", "demo"); code == 0 || !strings.Contains(out, "401") {
		t.Errorf("CLI with a wrong BULKHEAD_TOKEN: exit %d\n%s", code, out)
	}
	t.Setenv("BULKHEAD_TOKEN", string(first))
	if code, out := run("mode", "get", "-n", "demo"); code != 0 {
		t.Errorf("CLI with BULKHEAD_TOKEN: exit %d\n%s", code, out)
	}
	if code, _ := httpDo(t, "GET", base+"/healthz", ""); code != 200 {
		t.Errorf("healthz: %d", code)
	}
}

// TestRunAdminInsecure is the one control plane without authentication:
// it warns at start and answers without a token.
func TestRunAdminInsecure(t *testing.T) {
	var logs syncBuffer
	state := filepath.Join(t.TempDir(), "state")
	base := startRun(t, Config{StateDir: state, AdminAuth: AdminAuthConfig{Insecure: true}}, slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "WITHOUT authentication") {
		t.Errorf("no warning:\n%s", logs.String())
	}
	var out bytes.Buffer
	if code := cli.Execute(context.Background(), []string{"--server", base, "mode", "get", "-A"},
		cli.Streams{In: strings.NewReader(""), Out: &out, Err: &out}); code != 0 {
		t.Errorf("CLI without a token, insecure: exit %d\n%s", code, out.String())
	}
	if _, err := os.Stat(filepath.Join(state, TokenFileName)); err == nil {
		t.Error("an insecure control plane created a token")
	}
}

// TestRunAdminKubeAuth: in Kubernetes mode without a token file the admin
// API authenticates callers with the cluster: a real service-account token
// is authenticated (403: no RBAC allows it, where the token authenticator
// would answer 401) and no admin-token file is created.
func TestRunAdminKubeAuth(t *testing.T) {
	env := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "nobody", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	h, err := withAdminAuth(http.NotFoundHandler(), Config{StateDir: state, Kube: &KubeConfig{Rest: env.Config}}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		token string
		want  int
	}{{"", 401}, {"garbage-garbage-garbage", 401}, {tr.Status.Token, 403}} {
		req := httptest.NewRequest("GET", "/v1/policies", nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.want {
			t.Errorf("token %.10q: %d %s, want %d", c.token, w.Code, w.Body, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(state, TokenFileName)); err == nil {
		t.Error("Kubernetes mode created an admin token")
	}
}
