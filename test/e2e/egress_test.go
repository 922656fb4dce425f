package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/demo"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// The egress world: "app" is the workload, in namespace demo, behind
// bulkhead-proxy with outbound capture; "dns" runs dnsmasq, the app's
// nameserver (its resolv.conf); "ext" is allowed.test, an HTTPS server
// (openssl s_server); "other" is blocked.test, an HTTPS server too and a
// TCP server on port 8080. None but app is a known workload: to app's
// egress rules they are addresses, and names.
const (
	appHost   = "app"
	dnsHost   = "dns"
	extHost   = "ext"
	otherHost = "other"
	tcpPort   = 8080
)

type egressEnv struct {
	*demo.Env
	// accepts counts the connections other's TCP server accepted.
	accepts atomic.Int64
}

// newEgressEnv builds lab n: the hosts, app's resolv.conf (naming dns),
// the control plane in discover mode, dnsmasq, the HTTPS and TCP servers,
// `bulkhead-proxy init --outbound` and `run --outbound` in app.
func newEgressEnv(t *testing.T, ctx context.Context, n int) *egressEnv {
	t.Helper()
	needTools(t, "dnsmasq", "dig", "curl", "openssl")
	l, err := lab.New(ctx, lab.Options{Prefix: labPrefix(n), Subnet: labSubnet(n), Log: testLog(t), Grace: time.Second, KeepDir: keep})
	if err != nil {
		t.Fatal(err)
	}
	e := &egressEnv{Env: &demo.Env{
		Config: demo.Config{
			BinDir:         binDir(t),
			Prefix:         labPrefix(n),
			Subnet:         labSubnet(n),
			Namespace:      "demo",
			Hosts:          []string{appHost, dnsHost, extHost, otherHost},
			Server:         appHost,
			DefaultMode:    string(v1alpha1.ModeDiscover),
			ReportInterval: 200 * time.Millisecond,
			LogLevel:       "debug",
			Log:            testLog(t),
			Keep:           keep,
		},
		Lab:      l,
		GRPCAddr: netip.AddrPortFrom(l.HostAddr(), demo.GRPCPort),
	}}
	var procs = map[string]*lab.Proc{}
	t.Cleanup(func() {
		if t.Failed() {
			procs["bulkhead-controlplane"], procs["bulkhead-proxy"] = e.ControlPlane, e.Proxy
			dumpProcs(t, procs)
			if keep {
				t.Logf("kept %s", l.Dir())
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	if err := e.build(ctx, t, procs); err != nil {
		t.Fatalf("start the environment: %v", err)
	}
	return e
}

func (e *egressEnv) build(ctx context.Context, t *testing.T, procs map[string]*lab.Proc) error {
	for _, h := range e.Hosts {
		if _, err := e.Lab.AddHost(h); err != nil {
			return err
		}
	}
	app, dns, ext, other := e.Host(appHost), e.Host(dnsHost), e.Host(extHost), e.Host(otherHost)

	// app's resolver: `ip netns exec` mounts /etc/netns/<ns>/resolv.conf
	// over /etc/resolv.conf for every process it starts there (clients,
	// and the proxy, whose DNS upstream it is by default).
	etc := filepath.Join("/etc/netns", app.NetNS())
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	t.Cleanup(func() { _ = os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), fmt.Appendf(nil, "nameserver %s\noptions timeout:2 attempts:1\n", dns.Addr()), 0o644); err != nil {
		return err
	}

	e.Dir = filepath.Join(e.Lab.Dir(), "demo")
	if err := os.Mkdir(e.Dir, 0o755); err != nil {
		return err
	}
	e.StateDir = filepath.Join(e.Dir, "state")
	e.WorkloadsFile = filepath.Join(e.Dir, "workloads.yaml")
	if err := os.WriteFile(e.WorkloadsFile, fmt.Appendf(nil, "workloads:\n- name: %s\n  namespace: %s\n  ips: [%s]\n", appHost, e.Namespace, app.Addr()), 0o644); err != nil {
		return err
	}
	if err := e.StartControlPlane(ctx); err != nil {
		return err
	}

	p, err := dns.Start(ctx, "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address="+dns.Addr().String(), "--port=53", "--pid-file=", "--user=root", "--log-queries",
		"--local=/test/", "--local-ttl=300",
		"--address=/allowed.test/"+ext.Addr().String(), "--address=/blocked.test/"+other.Addr().String())
	if err != nil {
		return err
	}
	procs["dnsmasq"] = p

	// A certificate for allowed.test, and the HTTPS servers.
	cert, key := filepath.Join(e.Dir, "cert.pem"), filepath.Join(e.Dir, "key.pem")
	if _, err := e.Lab.Root().Run(ctx, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
		"-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=allowed.test",
		"-addext", "subjectAltName=DNS:allowed.test,DNS:other.test"); err != nil {
		return err
	}
	for _, h := range []*lab.Host{ext, other} {
		p, err := h.Start(ctx, "openssl", "s_server", "-accept", "443", "-cert", cert, "-key", key, "-www", "-quiet")
		if err != nil {
			return err
		}
		procs["s_server "+h.Name()] = p
	}
	ln, err := other.Listen(ctx, "tcp", netip.AddrPortFrom(other.Addr(), tcpPort).String())
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepts.Add(1)
			_, _ = c.Write([]byte("hello\n"))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, a := range []netip.AddrPort{netip.AddrPortFrom(dns.Addr(), 53), netip.AddrPortFrom(ext.Addr(), 443), netip.AddrPortFrom(other.Addr(), 443)} {
		if err := lab.WaitTCP(wctx, nil, a); err != nil {
			return fmt.Errorf("server %v not up: %w", a, err)
		}
	}

	if _, err := app.Run(ctx, e.Bin("bulkhead-proxy"), "init", "--exclude-ports", strconv.Itoa(demo.ProxyAdminPort), "--outbound"); err != nil {
		return fmt.Errorf("install the redirect: %w", err)
	}
	return e.startProxy(ctx)
}

// startProxy runs `bulkhead-proxy run --outbound` in app (its DNS upstream
// from the resolv.conf) and waits until it enforces a policy.
func (e *egressEnv) startProxy(ctx context.Context) error {
	p, err := e.Host(appHost).Start(ctx, e.Bin("bulkhead-proxy"), append([]string{"run", "--outbound",
		"--node", e.Node(),
		"--xds-addr", e.GRPCAddr.String(),
		"--admin-addr", ":" + strconv.Itoa(demo.ProxyAdminPort),
		"--cache-dir", filepath.Join(e.Dir, "proxy-cache"),
		"--report-interval", e.ReportInterval.String(),
		"--log-level", e.LogLevel}, e.TrustArgs()...)...)
	if err != nil {
		return err
	}
	e.Proxy = p
	if _, err := e.WaitPolicy(ctx, ""); err != nil {
		return fmt.Errorf("proxy %s has no policy: %w", e.Node(), err)
	}
	return e.Poll(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		s, err := e.ProxyPolicy(ctx)
		return err == nil && s.Connected, nil
	})
}

// run runs a client in app and returns its stdout, stderr and exit code.
func (e *egressEnv) run(t *testing.T, ctx context.Context, name string, args ...string) (string, string, int) {
	t.Helper()
	out, errOut, code, err := runClient(ctx, e.Host(appHost), name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out, errOut, code
}

// dig asks app's nameserver (through the sidecar) about name.
func (e *egressEnv) dig(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	out, _, _ := e.run(t, ctx, "dig", "+tries=1", "+time=3", name)
	return out
}

// https fetches https://<host>/ from app with curl (the certificate is
// self-signed: -k), resolving host through the sidecar unless resolve
// ("host:port:addr") pins it, and returns curl's status code and HTTP code.
func (e *egressEnv) https(t *testing.T, ctx context.Context, host, resolve string) (int, string, string) {
	t.Helper()
	args := []string{"-skS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"}
	if resolve != "" {
		args = append(args, "--resolve", resolve)
	}
	out, errOut, code := e.run(t, ctx, "curl", append(args, "https://"+host+"/")...)
	return code, out, errOut
}

// connectOther connects from app to other's TCP server and returns what it
// read (hello when the connection went through).
func (e *egressEnv) connectOther(ctx context.Context) (string, error) {
	c, err := e.Host(appHost).DialContext(ctx, "tcp", netip.AddrPortFrom(e.Host(otherHost).Addr(), tcpPort).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// egressRules returns app's egress rules in the store's export.
func (e *egressEnv) egressRules(ctx context.Context) ([]v1alpha1.Rule, error) {
	out, err := e.Client.Export(ctx, e.Namespace)
	if err != nil {
		return nil, err
	}
	ps, err := v1alpha1.UnmarshalYAML(out)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.Name == appHost {
			return p.Spec.Egress, nil
		}
	}
	return nil, nil
}

// TestEgress: in discover mode, the workload's own DNS queries and
// connections (through its sidecar's outbound capture) are learned as egress
// rules — the HTTPS server it reached through allowed.test as an FQDN peer
// of that name, not its address; in protect mode with those learned rules,
// allowed.test is reachable by its name and refused when pinned to another
// address; then, with a policy that allows asking the nameserver
// about allowed.test and HTTPS to allowed.test (an FQDN peer with an SNI
// rule), the workload reaches allowed.test, is answered REFUSED (with EDE
// Blocked) for blocked.test, is reset when it connects to an address no
// rule allows, and gets a TLS alert when it asks allowed.test's address for
// another name.
func TestEgress(t *testing.T) {
	ctx := testCtx(t)
	e := newEgressEnv(t, ctx, 60)
	ext, other, dns := e.Host(extHost).Addr(), e.Host(otherHost).Addr(), e.Host(dnsHost).Addr()

	// Discover: everything goes through, and is learned.
	if out := e.dig(t, ctx, "allowed.test"); !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "\tA\t"+ext.String()) {
		t.Fatalf("discover: dig allowed.test:\n%s", out)
	}
	if code, http, stderr := e.https(t, ctx, "allowed.test", ""); code != 0 || http != "200" {
		t.Fatalf("discover: curl https://allowed.test/: exit %d, HTTP %q\n%s", code, http, stderr)
	}
	if got, err := e.connectOther(ctx); got != "hello\n" {
		t.Fatalf("discover: connection to %v:%d: %q, %v", other, tcpPort, got, err)
	}
	dashes := func(a netip.Addr) string { return strings.ReplaceAll(a.String(), ".", "-") }
	wantLearned := map[string]func(v1alpha1.Rule) bool{
		"to-" + dashes(dns) + "-dns-53": func(r v1alpha1.Rule) bool {
			return r.DNS != nil && slices.Contains(r.DNS.Names, "allowed.test") && slices.Contains(r.DNS.Types, "A") &&
				len(r.Peers) == 1 && r.Peers[0].CIDR == dns.String()+"/32"
		},
		// ext was reached through the name app resolved: an FQDN peer,
		// not ext's address.
		"to-allowed-test-tls-443": func(r v1alpha1.Rule) bool {
			return r.TLS != nil && slices.Equal(r.TLS.ServerNames, []string{"allowed.test"}) &&
				len(r.Peers) == 1 && r.Peers[0] == v1alpha1.Peer{FQDN: "allowed.test"}
		},
		"to-" + dashes(other) + "-tcp-8080": func(r v1alpha1.Rule) bool { return true },
	}
	var learned []v1alpha1.Rule
	err := e.Poll(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
		rules, err := e.egressRules(ctx)
		if err != nil {
			return false, nil
		}
		learned = rules
		found := 0
		for _, r := range rules {
			if ok := wantLearned[r.Name]; ok != nil && ok(r) && r.Origin == v1alpha1.OriginLearned {
				found++
			}
		}
		return found == len(wantLearned), nil
	})
	if err != nil {
		t.Fatalf("discover: egress rules not learned: %v\nhave %+v", err, learned)
	}
	for _, r := range learned {
		if slices.ContainsFunc(r.Peers, func(p v1alpha1.Peer) bool { return p.CIDR == ext.String()+"/32" }) {
			t.Errorf("discover: a rule names ext by its address, not by the name app resolved: %+v", r)
		}
	}
	e.protectLearned(t, ctx)

	// Protect, with the operator's policy: names instead of addresses.
	policy := fmt.Sprintf(`apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: %s, namespace: %s}
spec:
  mode: protect
  egress:
  - name: dns
    peers: [{cidr: %s/32}]
    ports: [{port: 53, protocol: dns}]
    dns: {names: [allowed.test]}
  - name: allowed-https
    peers: [{fqdn: allowed.test}]
    ports: [{port: 443, protocol: tls}]
    tls: {serverNames: [allowed.test]}
`, appHost, e.Namespace, dns)
	if _, err := e.Client.Apply(ctx, []byte(policy)); err != nil {
		t.Fatalf("apply the protect policy: %v", err)
	}
	err = e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		s, err := e.ProxyPolicy(ctx)
		return err == nil && s.Mode == string(v1alpha1.ModeProtect) && slices.Equal(s.Egress, []string{"demo/app/allowed-https", "demo/app/dns"}), nil
	})
	if err != nil {
		s, _ := e.ProxyPolicy(ctx)
		t.Fatalf("the proxy does not enforce the protect policy: %v (%+v)", err, s)
	}
	acceptsBefore := e.accepts.Load()

	// The allowed name: answered, and reachable over HTTPS for its name.
	if out := e.dig(t, ctx, "allowed.test"); !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "\tA\t"+ext.String()) {
		t.Errorf("protect: dig allowed.test:\n%s", out)
	}
	if code, http, stderr := e.https(t, ctx, "allowed.test", ""); code != 0 || http != "200" {
		t.Errorf("protect: curl https://allowed.test/: exit %d, HTTP %q\n%s", code, http, stderr)
	}
	// The name no rule allows: REFUSED by the sidecar, with EDE Blocked.
	out := e.dig(t, ctx, "blocked.test")
	if !strings.Contains(out, "status: REFUSED") || !strings.Contains(out, "EDE: 15 (Blocked)") {
		t.Errorf("protect: dig blocked.test:\n%s", out)
	}
	if code, http, _ := e.https(t, ctx, "blocked.test", ""); code == 0 {
		t.Errorf("protect: curl https://blocked.test/ succeeded (HTTP %s)", http)
	}
	// An address no rule allows: reset at connect, nothing reaches it.
	if got, err := e.connectOther(ctx); got != "" || err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("protect: connection to %v:%d: %q, %v; want it reset", other, tcpPort, got, err)
	}
	if code, http, _ := e.https(t, ctx, other.String(), ""); code == 0 {
		t.Errorf("protect: curl https://%v/ succeeded (HTTP %s)", other, http)
	}
	if n := e.accepts.Load() - acceptsBefore; n != 0 {
		t.Errorf("protect: other's server accepted %d connections", n)
	}
	// allowed.test's address asked for another name: the TLS rule
	// refuses the ClientHello with an alert.
	if code, http, stderr := e.https(t, ctx, "other.test", "other.test:443:"+ext.String()); code == 0 || !strings.Contains(stderr, "alert access denied") {
		t.Errorf("protect: curl https://other.test/ at allowed.test's address: exit %d, HTTP %q, want a TLS access_denied alert\n%s", code, http, stderr)
	}

	// The control plane sees the denials as the app's egress violations.
	want := []struct {
		what  string
		match func(r cli.FlowRecord) bool
	}{
		{"DNS query for blocked.test", func(r cli.FlowRecord) bool {
			return r.Protocol == "dns" && r.Resource == "blocked.test" && r.DstIP == dns.String()
		}},
		{"connection to other", func(r cli.FlowRecord) bool {
			return r.DstIP == other.String() && r.DstPort == tcpPort && r.Reason == "no_rule"
		}},
		{"ClientHello for other.test", func(r cli.FlowRecord) bool {
			return r.Protocol == "tls" && r.Resource == "other.test" && r.DstIP == ext.String()
		}},
	}
	for _, w := range want {
		rec := waitViolation(t, ctx, e.Env, w.what, func(r cli.FlowRecord) bool {
			return r.Direction == "egress" && r.Verdict == "deny" && r.SrcIP == e.Host(appHost).Addr().String() && w.match(r)
		})
		if rec.Mode != "protect" || rec.SrcSegment != "demo/app" {
			t.Errorf("violation %s: %+v", w.what, rec)
		}
	}
	// And the allowed traffic under its rules.
	var flows []cli.FlowRecord
	err = e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		recs, err := e.Client.Flows(ctx, cli.Query{Segment: "demo/app"})
		if err != nil {
			return false, nil
		}
		flows = recs
		var dnsOK, tlsOK bool
		for _, r := range recs {
			dnsOK = dnsOK || r.Rule == "demo/app/dns" && r.Resource == "allowed.test" && r.Verdict == "allow"
			tlsOK = tlsOK || r.Rule == "demo/app/allowed-https" && r.Resource == "allowed.test" && r.Verdict == "allow"
		}
		return dnsOK && tlsOK, nil
	})
	if err != nil {
		t.Errorf("allowed egress flows not reported: %v%s", err, recordsString(flows))
	}
	if bytes.Contains(e.Proxy.Output(), []byte(`"level":"ERROR"`)) {
		t.Errorf("the proxy logged errors:\n%s", e.Proxy.Tail(20))
	}
}

// protectLearned switches app to protect mode with the rules discover
// learned and shows that the learned FQDN rule is what allows the
// connection: curl reaches allowed.test through the name it resolves, and
// is refused at connect when allowed.test is pinned to other's address,
// which app never resolved through that name (same SNI, same port).
func (e *egressEnv) protectLearned(t *testing.T, ctx context.Context) {
	t.Helper()
	other := e.Host(otherHost).Addr()
	if err := e.Client.SetMode(ctx, e.Namespace, appHost, v1alpha1.ModeProtect); err != nil {
		t.Fatalf("set protect mode: %v", err)
	}
	const rule = "demo/app/to-allowed-test-tls-443"
	err := e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		s, err := e.ProxyPolicy(ctx)
		return err == nil && s.Mode == string(v1alpha1.ModeProtect) && slices.Contains(s.Egress, rule), nil
	})
	if err != nil {
		s, _ := e.ProxyPolicy(ctx)
		t.Fatalf("the proxy does not enforce the learned rules in protect mode: %v (%+v)", err, s)
	}
	if code, http, stderr := e.https(t, ctx, "allowed.test", ""); code != 0 || http != "200" {
		t.Errorf("protect (learned): curl https://allowed.test/: exit %d, HTTP %q\n%s", code, http, stderr)
	}
	if code, http, _ := e.https(t, ctx, "allowed.test", "allowed.test:443:"+other.String()); code == 0 {
		t.Errorf("protect (learned): curl https://allowed.test/ pinned to %v succeeded (HTTP %s)", other, http)
	}
	waitViolation(t, ctx, e.Env, "connection to allowed.test pinned to other", func(r cli.FlowRecord) bool {
		return r.Direction == "egress" && r.Verdict == "deny" && r.DstIP == other.String() && r.DstPort == 443 && r.Reason == "no_rule"
	})
	var flows []cli.FlowRecord
	err = e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		recs, err := e.Client.Flows(ctx, cli.Query{Segment: "demo/app"})
		flows = recs
		return err == nil && slices.ContainsFunc(recs, func(r cli.FlowRecord) bool {
			return r.Rule == rule && r.Verdict == "allow" && r.Mode == "protect" && r.DstIP == e.Host(extHost).Addr().String()
		}), nil
	})
	if err != nil {
		t.Errorf("protect (learned): no flow allowed by %s: %v%s", rule, err, recordsString(flows))
	}
}
