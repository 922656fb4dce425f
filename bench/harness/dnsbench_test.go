package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/protocols/tls"
)

// dnsperfOutput is dnsperf 2.10's output of a run against unbound over
// TCP (recorded).
const dnsperfOutput = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -m tcp -s 127.0.0.1 -p 5399 -d q.txt -c 16 -T 1 -l 2
[Status] Sending queries (to 127.0.0.1:5399)
[Status] Started at: Sat Nov 28 01:48:50 2026
[Status] Stopping after 2.000000 seconds
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         41519
  Queries completed:    41519 (100.00%)
  Queries lost:         0 (0.00%)

  Response codes:       NOERROR 41519 (100.00%)
  Average packet size:  request 30, response 46
  Run time (s):         2.191074
  Queries per second:   18949.154615

  Average Latency (s):  0.004605 (min 0.000023, max 0.524211)
  Latency StdDev (s):   0.027636

Connection Statistics:

  Reconnections:        0

  Average Latency (s):  0.001851 (min 0.000643, max 0.002139)
  Latency StdDev (s):   0.000349

`

func TestParseDNSPerf(t *testing.T) {
	r, err := parseDNSPerf([]byte(dnsperfOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := result{Throughput: 18949.154615, Ops: 41519, Elapsed: 2191074 * time.Microsecond}
	if r != want {
		t.Errorf("parseDNSPerf: %+v, want %+v", r, want)
	}
	for name, out := range map[string]string{
		"lost":     strings.Replace(dnsperfOutput, "Queries lost:         0 (0.00%)", "Queries lost:         87 (0.77%)", 1),
		"refused":  strings.Replace(dnsperfOutput, "NOERROR 41519 (100.00%)", "NOERROR 41000 (98.75%), REFUSED 519 (1.25%)", 1),
		"servfail": strings.Replace(dnsperfOutput, "NOERROR 41519 (100.00%)", "SERVFAIL 41519 (100.00%)", 1),
		"no rate":  strings.Replace(dnsperfOutput, "Queries per second:", "Queries:", 1),
		"none":     strings.Replace(dnsperfOutput, "Queries completed:    41519", "Queries completed:    0", 1),
		"empty":    "",
	} {
		if r, err := parseDNSPerf([]byte(out)); err == nil {
			t.Errorf("%s: parsed as %+v, want an error", name, r)
		}
	}
}

// TestDNSAndTLSPolicy: the bench policy, compiled as the proxy does, lets
// the client ask for the benchmark's names (type A) and start TLS with the
// allowed SNI, and denies the denied name, another type, another SNI and a
// ClientHello without one.
func TestDNSAndTLSPolicy(t *testing.T) {
	pol, client := cachedBenchPolicy(t)
	if got := pol.Protocol(dnsPort); got != "dns" {
		t.Errorf("port %d protocol %q, want dns", dnsPort, got)
	}
	if got := pol.Protocol(tlsPort); got != "tls" {
		t.Errorf("port %d protocol %q, want tls", tlsPort, got)
	}
	for _, tc := range []struct {
		port           uint16
		verb, resource string
		want           enforce.Verdict
	}{
		{dnsPort, "A", dnsNames[0], enforce.Allow},
		{dnsPort, "A", dnsNames[len(dnsNames)-1], enforce.Allow},
		{dnsPort, "A", dnsDenied, enforce.Deny},
		{dnsPort, "AAAA", dnsNames[0], enforce.Deny},
		{dnsPort, "A", "", enforce.Deny},
		{tlsPort, tls.Verb, tlsAllowed, enforce.Allow},
		{tlsPort, tls.Verb, tlsDenied, enforce.Deny},
		{tlsPort, tls.Verb, "", enforce.Deny},
	} {
		if d := judge(t, pol, client, tc.port, tc.verb, tc.resource, ""); d.Verdict != tc.want {
			t.Errorf("port %d: %s %q: %+v, want %v", tc.port, tc.verb, tc.resource, d, tc.want)
		}
	}
}

// TestUnboundAndNginxTLSConfig: unbound and nginx themselves accept the
// configurations.
func TestUnboundAndNginxTLSConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(conf, []byte(unboundConfig(dir, "127.0.0.1", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("unbound-checkconf", conf).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s", err, out)
	}
	for _, n := range append(dnsNames[:len(dnsNames):len(dnsNames)], dnsDenied) {
		if !strings.Contains(unboundConfig(dir, "127.0.0.1", 4096), `"`+n+`. 3600 IN A 127.0.0.1"`) {
			t.Errorf("unbound config lacks %s", n)
		}
	}
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", filepath.Join(dir, "key.pem"), "-out", filepath.Join(dir, "cert.pem"),
		"-subj", "/CN="+tlsAllowed, "-days", "1").CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	for _, d := range []string{"www", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nconf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(nconf, []byte(tlsNginxConfig(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nginx", "-t", "-q", "-p", dir, "-c", nconf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

// TestSuiteParagraphs: the report prints the paragraph of each suite that
// ran, under its own heading, and no heading when none ran.
func TestSuiteParagraphs(t *testing.T) {
	rep := &Report{Commit: "abc", Date: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC), Profile: Smoke()}
	if md := string(rep.Markdown()); strings.Contains(md, "## Protocol suites") {
		t.Errorf("a report without suites has their heading:\n%s", md)
	}
	rep.about = []string{dnsSuite.about, tlsSuite.about}
	md := string(rep.Markdown())
	for _, want := range []string{"## Protocol suites", "**DNS over TCP.**", "dnsperf -m tcp -c 16", "**TLS handshakes.**", "SNI `denied.bench.test`"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
