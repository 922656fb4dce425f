package demo

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/test/lab"
)

func TestClassify(t *testing.T) {
	for out, want := range map[string]string{
		"OK\n":     Allowed,
		"\n":       Allowed, // nil
		"apples\n": Allowed,
		"1\n2\n":   Allowed,
		"ERR bulkhead: command flushall denied by policy demo/redis\n\n":      Denied,
		"ERR unknown command 'FOO', with args beginning with: \n\n":           "error: ERR unknown command 'FOO', with args beginning with:",
		"Could not connect to Redis at 198.18.0.4:6379: Connection refused\n": Refused,
		"Error: Connection reset by peer\n":                                   Refused,
		"Error: Server closed the connection\n":                               Refused,
	} {
		if got := Classify(out); got != want {
			t.Errorf("Classify(%q) = %q, want %q", out, got, want)
		}
	}
	for out, want := range map[string]string{
		"ERR bulkhead: denied\n\napples\n":      Denied + ", then " + Allowed,
		"ERR bulkhead: denied\n\n\n":            Denied + ", then " + Allowed, // then nil
		"OK\n\n":                                Allowed + ", then " + Allowed,
		"Error: Server closed the connection\n": Refused,
	} {
		if got := classifySession(out); got != want {
			t.Errorf("classifySession(%q) = %q, want %q", out, got, want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	if err := c.defaults(); err == nil {
		t.Error("a Config without BinDir was accepted")
	}
	c = Config{BinDir: "/x", Server: "db"}
	if err := c.defaults(); err == nil {
		t.Error("a server that is not a host was accepted")
	}
	c = Config{BinDir: "/x"}
	if err := c.defaults(); err != nil || c.Prefix != "bhdemo" || c.Namespace != "demo" || len(c.Hosts) != 4 {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

// TestDemo runs the whole story against the built binaries: every attack
// must give its expected outcome, and nothing may be left behind.
func TestDemo(t *testing.T) {
	bin := needBinaries(t)
	var out bytes.Buffer
	err := Run(t.Context(), Options{BinDir: bin, Out: &out, Prefix: "bhdemot", Subnet: netip.MustParsePrefix("198.18.200.0/24")})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"from-cart-redis-6379", "mode protect", "mode monitor", "✓"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the story lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "✗") {
		t.Error("an attack row is marked ✗")
	}
	ns, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ns), "bhdemot-") {
		t.Errorf("namespaces left behind:\n%s", ns)
	}
}

// needBinaries returns $BULKHEAD_BIN. It fails the test when it is unset or
// not root (skipped only in -short mode): make test builds the binaries and
// sets it.
func needBinaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("demo test: skipped in -short mode")
	}
	bin := os.Getenv("BULKHEAD_BIN")
	if bin == "" {
		t.Fatal("BULKHEAD_BIN is not set: run make test (it builds the binaries and sets it), or go test -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces")
	}
	if _, err := os.Stat(filepath.Join(bin, "bulkhead-proxy")); err != nil {
		t.Fatalf("BULKHEAD_BIN=%s: %v", bin, err)
	}
	return bin
}

// TestCLI runs the bulkhead binary against the real control plane of an
// Env, after some discovery traffic.
func TestCLI(t *testing.T) {
	bin := needBinaries(t)
	ctx := t.Context()
	e, err := Start(ctx, Config{BinDir: bin, Prefix: "bhcli", Subnet: netip.MustParsePrefix("198.18.201.0/24"), ReportInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*lab.Proc{e.ControlPlane, e.Proxy} {
				t.Logf("%s:\n%s", p.LogPath(), p.Tail(30))
			}
		}
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, args := range [][]string{{"SET", "k", "v"}, {"GET", "k"}} {
		if out, err := e.RedisCLI(ctx, "cart", "", args...); err != nil || Classify(out) != Allowed {
			t.Fatalf("redis-cli %v: %q, %v", args, out, err)
		}
	}
	if err := e.WaitLearned(ctx, map[string][]string{"cart": {"get", "set"}}); err != nil {
		t.Fatal(err)
	}
	cli := func(wantCode int, args ...string) string {
		t.Helper()
		out, err := e.CLI(ctx, args...)
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("bulkhead %v: %v", args, err)
		}
		if code != wantCode {
			t.Fatalf("bulkhead %v: exit %d, want %d\n%s", args, code, wantCode, out)
		}
		t.Logf("$ bulkhead %s\n%s", strings.Join(args, " "), out)
		return out
	}
	contains := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}

	contains(cli(0, "proxies"), "redis.demo", "yes")
	contains(cli(0, "mode", "get", "-n", "demo"), "cart ", "redis ", "discover")
	// Flows arrive with the next report; the learned rule may already be
	// there before them.
	if err := e.Poll(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		out, _ := e.CLI(ctx, "flows", "-n", "demo")
		return strings.Contains(out, "SET") && strings.Contains(out, "GET"), nil
	}); err != nil {
		t.Errorf("flows: %v\n%s", err, cli(0, "flows", "-n", "demo"))
	}
	contains(cli(0, "policy", "get", "redis", "-n", "demo"), "from-cart-redis-6379", "learned", "redis: get,set")

	// export → diff (equal) → change → diff (1) → apply → diff (equal).
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	cli(0, "policy", "export", "-n", "demo", "-f", file)
	if out := cli(0, "policy", "diff", "-f", file); out != "" {
		t.Errorf("diff of the export: %q", out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), "      - get\n", "      - get\n      - ping\n", 1)
	if changed == string(b) {
		t.Fatalf("the export has no get command:\n%s", b)
	}
	os.WriteFile(file, []byte(changed), 0o644)
	contains(cli(1, "policy", "diff", "-f", file), "+      - ping")
	contains(cli(0, "policy", "apply", "-f", file), "segmentpolicy demo/redis configured")
	cli(0, "policy", "diff", "-f", file)
	contains(cli(0, "policy", "apply", "-f", file), "segmentpolicy demo/redis unchanged")

	cli(0, "mode", "set", "redis", "protect", "-n", "demo")
	if _, err := e.WaitProxyMode(ctx, "protect", "from-cart-redis-6379"); err != nil {
		t.Fatal(err)
	}
	contains(cli(0, "mode", "get", "redis", "-n", "demo"), "protect")
	if out, _ := e.RedisCLI(ctx, "cart", "", "PING"); Classify(out) != Allowed {
		t.Errorf("PING, applied by hand, is not allowed: %q", out)
	}
	if out, _ := e.RedisCLI(ctx, "cart", "", "DEL", "k"); Classify(out) != Denied {
		t.Errorf("DEL, never seen, is not denied: %q", out)
	}
}
