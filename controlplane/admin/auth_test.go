package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

const goodToken = "0123456789abcdef-the-token"

// authServer serves the real API over a real store behind WithAuth with
// goodToken; it returns the server, the registry and the log.
func authServer(t *testing.T) (*httptest.Server, *prometheus.Registry, *bytes.Buffer) {
	t.Helper()
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ta, err := NewTokenAuth(goodToken)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	h := WithAuth(NewHandler(Deps{Store: st, Flows: flows.NewRecorder(flows.Options{})}), ta,
		AuthOptions{Registerer: reg, Log: slog.New(slog.NewTextHandler(&logs, nil)), LogEvery: time.Hour})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, reg, &logs
}

func send(t *testing.T, method, url, token string, body []byte) (int, http.Header, errorBody) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e errorBody
	if resp.StatusCode/100 != 2 {
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatalf("%s %s: %d without a JSON error: %v", method, url, resp.StatusCode, err)
		}
	}
	return resp.StatusCode, resp.Header, e
}

// TestAuthToken: without a token or with a wrong one every API request is
// 401 (JSON, WWW-Authenticate), counted and logged once per reason; the
// right token gets 200; health and metrics stay open.
func TestAuthToken(t *testing.T) {
	srv, reg, logs := authServer(t)
	for _, c := range []struct {
		name, method, path, token string
		body                      string
		want                      int
	}{
		{"no token", "GET", "/v1/policies", "", "", 401},
		{"wrong token", "GET", "/v1/policies", "not-the-token-at-all", "", 401},
		{"token prefix", "GET", "/v1/policies", goodToken[:10], "", 401},
		{"token longer", "GET", "/v1/policies", goodToken + "x", "", 401},
		{"wrong token, mode", "PUT", "/v1/segments/demo/redis/mode", "nope-nope-nope-nope", `{"mode":"protect"}`, 401},
		{"no token, unknown path", "GET", "/v1/nothing", "", "", 401},
		{"right token", "GET", "/v1/policies", goodToken, "", 200},
		{"right token, mode", "PUT", "/v1/segments/demo/redis/mode", goodToken, `{"mode":"protect"}`, 200},
		{"right token, unknown path", "GET", "/v1/nothing", goodToken, "", 404},
		{"healthz open", "GET", "/healthz", "", "", 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, hdr, e := send(t, c.method, srv.URL+c.path, c.token, []byte(c.body))
			if code != c.want {
				t.Fatalf("%d %q, want %d", code, e.Error, c.want)
			}
			if code == 401 && (hdr.Get("WWW-Authenticate") == "" || e.Error == "") {
				t.Errorf("401 without WWW-Authenticate or error: %v %q", hdr, e.Error)
			}
		})
	}
	// A malformed Authorization header is no token.
	req, _ := http.NewRequest("GET", srv.URL+"/v1/segments", nil)
	req.Header.Set("Authorization", "Basic "+goodToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("Basic auth: %d, want 401", resp.StatusCode)
	}

	failures := func(reason string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "bulkhead_admin_auth_failures_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
		t.Fatalf("no bulkhead_admin_auth_failures_total{reason=%q}", reason)
		return 0
	}
	if got := failures(ReasonMissing); got != 3 {
		t.Errorf("missing: %v, want 3", got)
	}
	if got := failures(ReasonInvalid); got != 4 {
		t.Errorf("invalid: %v, want 4", got)
	}
	// Rate-limited: one line per reason within LogEvery.
	if n := strings.Count(logs.String(), "admin request refused"); n != 2 {
		t.Errorf("%d log lines, want 2 (one per reason):\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "reason=invalid") || strings.Contains(logs.String(), goodToken) {
		t.Errorf("log lines: %s", logs)
	}
}

// TestAuthBodyBounds: an over-large body gets 413 with the right token, on
// every endpoint that reads one, and 401 without (nothing is read first).
func TestAuthBodyBounds(t *testing.T) {
	srv, _, _ := authServer(t)
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/policies/apply"},
		{"PUT", "/v1/segments/demo/redis/mode"},
		{"PUT", "/v1/namespaces/demo/mode"},
	} {
		big := bytes.Repeat([]byte("a"), v1alpha1.MaxPolicyFile+1)
		if code, _, e := send(t, c.method, srv.URL+c.path, goodToken, big); code != 413 || !strings.Contains(e.Error, "request body over") {
			t.Errorf("%s %s, big body: %d %q, want 413", c.method, c.path, code, e.Error)
		}
		if code, _, _ := send(t, c.method, srv.URL+c.path, "", big); code != 401 {
			t.Errorf("%s %s, big body, no token: %d, want 401", c.method, c.path, code)
		}
	}
}

func TestAccessOf(t *testing.T) {
	apply := "apiVersion: bulkhead.io/v1alpha1\nkind: SegmentPolicy\nmetadata: {name: a, namespace: x}\n---\n" +
		"apiVersion: bulkhead.io/v1alpha1\nkind: SegmentPolicy\nmetadata: {name: b, namespace: team-b}\n"
	for _, c := range []struct {
		method, target, body string
		want                 []Access
	}{
		{"GET", "/v1/policies", "", []Access{{Verb: "list"}}},
		{"GET", "/v1/policies/export?namespace=x", "", []Access{{Verb: "list", Namespace: "x"}}},
		{"POST", "/v1/policies/apply", apply, []Access{{Verb: "update", Namespace: "x"}, {Verb: "update", Namespace: "team-b"}}},
		{"POST", "/v1/policies/apply", manyNamespaces(MaxApplyNamespaces + 1), []Access{{Verb: "update"}}},
		{"POST", "/v1/policies/apply", manyNamespaces(MaxApplyNamespaces), func() (out []Access) {
			for i := range MaxApplyNamespaces {
				out = append(out, Access{Verb: "update", Namespace: fmt.Sprintf("ns%d", i)})
			}
			return out
		}()},
		{"POST", "/v1/policies/apply", "not: [yaml", nil},
		{"PUT", "/v1/segments/x/a/mode", "", []Access{{Verb: "patch", Namespace: "x", Name: "a"}}},
		{"PUT", "/v1/namespaces/x/mode", "", []Access{{Verb: "patch", Namespace: "x"}}},
		{"POST", "/v1/segments/x/a/promotion/veto", "", []Access{{Verb: "patch", Namespace: "x", Name: "a"}}},
		{"GET", "/v1/flows?segment=x/a", "", []Access{{Verb: "get", Namespace: "x", Subresource: "flows"}}},
		{"GET", "/v1/violations?segment=x", "", []Access{{Verb: "get", Namespace: "x", Subresource: "flows"}}},
		{"GET", "/v1/history", "", []Access{{Verb: "get", Subresource: "flows"}}},
		{"GET", "/v1/map?namespace=x", "", []Access{{Verb: "get", Namespace: "x", Subresource: "flows"}}},
		{"POST", "/v1/explain", "", []Access{{Verb: "get", Subresource: "flows"}}},
		{"GET", "/v1/unknown", "", nil},
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		if diff := cmp.Diff(c.want, AccessOf(r, []byte(c.body))); diff != "" {
			t.Errorf("%s %s (-want +got):\n%s", c.method, c.target, diff)
		}
	}
}

func TestLoadOrCreateToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin-token")
	tok, created, err := LoadOrCreateToken(path)
	if err != nil || !created || len(tok) != 64 {
		t.Fatalf("create: %q %v %v", tok, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi.Mode(), err)
	}
	again, created, err := LoadOrCreateToken(path)
	if err != nil || created || again != tok {
		t.Fatalf("second start: %q %v %v, want the same token", again, created, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateToken(path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("world-readable token: %v", err)
	}
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	if _, err := ReadToken(short); err == nil {
		t.Error("a 3-byte token was accepted")
	}
	if _, err := NewTokenAuth("short"); err == nil {
		t.Error("NewTokenAuth accepted a short token")
	}
	ta, _ := NewTokenAuth(tok)
	if _, err := ta.Authenticate(context.Background(), tok); err != nil {
		t.Errorf("right token: %v", err)
	}
}

// manyNamespaces is a policy apply body naming n namespaces, two policies
// in each.
func manyNamespaces(n int) string {
	var b strings.Builder
	for i := range n {
		for _, name := range []string{"a", "b"} {
			fmt.Fprintf(&b, "---\napiVersion: bulkhead.io/v1alpha1\nkind: SegmentPolicy\nmetadata: {name: %s, namespace: ns%d}\n", name, i)
		}
	}
	return b.String()
}
