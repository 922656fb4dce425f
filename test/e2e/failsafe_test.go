package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/dataplane/xdsclient"
	"github.com/bulkhead-io/bulkhead/test/demo"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// TestControlPlaneDown: in protect mode the proxy keeps enforcing its last
// good policy when the control plane dies, a proxy restarted meanwhile
// enforces the policy it cached on disk, and once the control plane is back
// a mode change reaches the proxy again.
func TestControlPlaneDown(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	e := newEnv(t, ctx, 6)
	discover(t, ctx, e, discoveryTraffic, discoveryLearned)
	setModeAndWait(t, ctx, e, v1alpha1.ModeProtect)
	cache := filepath.Join(e.Dir, "proxy-cache") // where demo's StartProxy puts it
	if _, err := os.Stat(filepath.Join(cache, xdsclient.CacheFile)); err != nil {
		t.Fatalf("the proxy's cache: %v", err)
	}

	// Everything the proxy must keep doing without its control plane.
	enforcing := func(t *testing.T, when string) {
		t.Helper()
		c := dialRaw(t, ctx, e.Host("cart"), e.ServerAddr())
		rep, err := c.do("FLUSHALL")
		checkDenied(t, when+": FLUSHALL", rep, err, "flushall")
		rep, err = c.do("GET", key)
		checkReply(t, when+": GET", rep, err, valueRep)
		out, err := e.RedisCLI(ctx, "intruder", "", "PING")
		if err != nil {
			t.Fatal(err)
		}
		if got := demo.Classify(out); got != demo.Refused {
			t.Errorf("%s: intruder PING: %s (%q), want %s", when, got, out, demo.Refused)
		}
	}

	cp := e.ControlPlane
	e.StopControlPlane()
	// Env.Poll fails once a process of the Env has exited: the control
	// plane is down on purpose.
	e.ControlPlane = nil
	if exited, _ := cp.Exited(); !exited {
		t.Fatal("the control plane still runs after StopControlPlane")
	}
	enforcing(t, "control plane down")

	// A proxy (re)started while the control plane is down restores the
	// policy from its cache and enforces it.
	e.StopProxy()
	p := startProxy(t, ctx, e.Host(e.Server), e.Node(), e.GRPCAddr, cache, e.TrustArgs()...)
	e.Proxy = p
	s := waitProxyPolicy(t, ctx, e.Host(e.Server), func(s policySummary) bool { return true })
	if s.Mode != "protect" || s.Connected {
		t.Errorf("the restarted proxy: mode %s, connected %v; want protect from its cache, not connected", s.Mode, s.Connected)
	}
	enforcing(t, "proxy restarted, control plane down")

	// The control plane comes back: a mode change reaches the proxy.
	if err := e.StartControlPlane(ctx); err != nil {
		t.Fatal(err)
	}
	start := setMode(t, ctx, e, v1alpha1.ModeMonitor)
	// The proxy's reconnect backoff grows while the control plane is
	// away (up to 15s between attempts).
	err := poll(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		if err := p.Err(); err != nil {
			return false, err
		}
		out, err := e.RedisCLI(ctx, "cart", "", "DBSIZE")
		return err == nil && demo.Classify(out) == demo.Allowed, nil
	})
	if err != nil {
		t.Fatalf("the proxy did not converge to monitor: %v", err)
	}
	t.Logf("the proxy took monitor %v after the CLI returned", time.Since(start).Round(time.Millisecond))
	s = waitProxyPolicy(t, ctx, e.Host(e.Server), func(s policySummary) bool { return s.Connected })
	if s.Mode != "monitor" {
		t.Errorf("the proxy's policy: mode %s, want monitor", s.Mode)
	}
}

// proxyAdminPort is where the proxy serves /readyz and /debug/policy.
const proxyAdminPort = 15090

// startProxy starts bulkhead-proxy in h against the xDS server at xds and
// waits until its /readyz answers 200 (a policy is loaded, from the server
// or the cache). Unlike demo's StartProxy it needs no control plane. trust
// are its trust flags (demo.Env.TrustArgs, or --insecure).
func startProxy(t *testing.T, ctx context.Context, h *lab.Host, node string, xds netip.AddrPort, cache string, trust ...string) *lab.Proc {
	t.Helper()
	p, err := h.Start(ctx, filepath.Join(binDir(t), "bulkhead-proxy"), append([]string{"run",
		"--node", node,
		"--xds-addr", xds.String(),
		"--inbound-addr", ":15006",
		"--admin-addr", ":" + strconv.Itoa(proxyAdminPort),
		"--cache-dir", cache,
		"--report-interval", "200ms",
		"--log-level", "debug"}, trust...)...)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + netip.AddrPortFrom(h.Addr(), proxyAdminPort).String() + "/readyz"
	err = poll(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		if err := p.Err(); err != nil {
			return false, err
		}
		code, _, err := httpGet(ctx, url)
		return err == nil && code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("bulkhead-proxy not ready (%s): %v\n%s", url, err, p.Tail(20))
	}
	return p
}

// policySummary is what the proxy's /debug/policy says.
type policySummary struct {
	Segment    string `json:"segment"`
	Mode       string `json:"mode"`
	Revision   string `json:"revision"`
	XDSVersion string `json:"xdsVersion"`
	Connected  bool   `json:"connected"`
}

// waitProxyPolicy polls the proxy's /debug/policy until cond holds.
func waitProxyPolicy(t *testing.T, ctx context.Context, h *lab.Host, cond func(policySummary) bool) policySummary {
	t.Helper()
	url := "http://" + netip.AddrPortFrom(h.Addr(), proxyAdminPort).String() + "/debug/policy"
	var s policySummary
	var last string
	err := poll(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		code, body, err := httpGet(ctx, url)
		if err != nil || code != http.StatusOK {
			last = fmt.Sprintf("%d %s %v", code, body, err)
			return false, nil
		}
		last = string(body)
		if err := json.Unmarshal(body, &s); err != nil {
			return false, fmt.Errorf("%s: %w\n%s", url, err, body)
		}
		return cond(s), nil
	})
	if err != nil {
		t.Fatalf("%s: %v; last answer: %s", url, err, strings.TrimSpace(last))
	}
	return s
}

// httpClient talks to the lab directly, whatever HTTP_PROXY says.
var httpClient = &http.Client{Transport: &http.Transport{Proxy: nil}}

func httpGet(ctx context.Context, url string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}
