package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestAuthToken: the CLI sends the token it finds, in order: --token-file,
// BULKHEAD_TOKEN, --state-dir's admin-token, the kubeconfig's token in
// cluster mode; none sends no Authorization header.
func TestAuthToken(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write([]byte("[]"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := write("tok", "from-file\n")
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	write("state/admin-token", "from-state\n")
	kubeconfig := write("kubeconfig", `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: from-kubeconfig}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`)
	for _, c := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"none", "", nil, ""},
		{"token file", "from-env", []string{"--token-file", file, "--state-dir", filepath.Join(dir, "state")}, "Bearer from-file"},
		{"env", "from-env", []string{"--state-dir", filepath.Join(dir, "state")}, "Bearer from-env"},
		{"state dir", "", []string{"--state-dir", filepath.Join(dir, "state")}, "Bearer from-state"},
		{"kubeconfig", "", []string{"--kubeconfig", kubeconfig}, "Bearer from-kubeconfig"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("BULKHEAD_TOKEN", c.env)
			got = nil
			var out bytes.Buffer
			args := append([]string{"--server", srv.URL}, c.args...)
			if code := Execute(context.Background(), append(args, "flows"), Streams{In: strings.NewReader(""), Out: &out, Err: &out}); code != 0 {
				t.Fatalf("exit %d: %s", code, out.String())
			}
			if len(got) != 1 || got[0] != c.want {
				t.Errorf("Authorization %q, want %q", got, c.want)
			}
		})
	}
	if code := Execute(context.Background(), []string{"--server", srv.URL, "--token-file", filepath.Join(dir, "missing"), "flows"},
		Streams{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}); code == 0 {
		t.Error("a missing token file was not an error")
	}
}
