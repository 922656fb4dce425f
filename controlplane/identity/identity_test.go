package identity

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sample = `workloads:
- name: redis
  namespace: demo
  ips: [198.18.0.10, "::ffff:198.18.0.11"]
  labels: {app: redis}
  ports:
  - {port: 6379, protocol: redis}
  - {port: 22}
- name: cart
  namespace: demo
  segment: shop
  ips: [198.18.0.20]
  sidecar: envoy
- name: api
  namespace: alpha
  ips: ["2001:db8::1"]
`

func TestParse(t *testing.T) {
	tab, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := []Workload{
		{Name: "api", Namespace: "alpha", Segment: "api", IPs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}},
		{Name: "cart", Namespace: "demo", Segment: "shop", IPs: []netip.Addr{netip.MustParseAddr("198.18.0.20")}, Sidecar: SidecarEnvoy},
		{Name: "redis", Namespace: "demo", Segment: "redis",
			IPs:    []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.11")},
			Labels: map[string]string{"app": "redis"},
			Ports:  []Port{{Port: 22, Protocol: "tcp"}, {Port: 6379, Protocol: "redis"}}},
	}
	if diff := cmp.Diff(want, tab.Workloads(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("Workloads() (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		ip   string
		want string
	}{
		{"198.18.0.10", "redis.demo"},
		{"198.18.0.11", "redis.demo"},
		{"::ffff:198.18.0.11", "redis.demo"},
		{"198.18.0.20", "cart.demo"},
		{"2001:db8::1", "api.alpha"},
		{"198.18.0.99", ""},
	} {
		w, ok := tab.Lookup(netip.MustParseAddr(c.ip))
		got := ""
		if ok {
			got = NodeID(w)
		}
		if got != c.want {
			t.Errorf("Lookup(%s) = %q, want %q", c.ip, got, c.want)
		}
	}
}

func TestWorkloadsAreCopies(t *testing.T) {
	tab, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	ws := tab.Workloads()
	ws[2].Labels["app"] = "evil"
	ws[2].IPs[0] = netip.MustParseAddr("198.18.1.1")
	ws[2].Ports[0].Port = 1
	w, _ := tab.Lookup(netip.MustParseAddr("198.18.0.10"))
	if w.Labels["app"] != "redis" || w.IPs[0] != netip.MustParseAddr("198.18.0.10") || w.Ports[0].Port != 22 {
		t.Fatalf("caller's change reached the table: %+v", w)
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]struct{ from, to, want string }{
		"unknown field":   {"segment: shop", "segmnt: shop", "unknown field"},
		"bad name":        {"name: cart", "name: Cart", `"Cart" is not a DNS label`},
		"dotted name":     {"name: cart", "name: cart.x", "not a DNS label"},
		"no namespace":    {"  namespace: alpha\n", "", "workloads[2].namespace: required"},
		"bad segment":     {"segment: shop", "segment: sh_op", "workloads[1].segment"},
		"bad ip":          {"198.18.0.20", "198.18.0.300", `"198.18.0.300" is not an IP`},
		"shared ip":       {"198.18.0.20", "198.18.0.10", "198.18.0.10 already belongs to demo/redis"},
		"shared mapped":   {"198.18.0.20", `"::ffff:198.18.0.10"`, "already belongs to demo/redis"},
		"no ips":          {"  ips: [198.18.0.20]\n", "", "at least one IP"},
		"port zero":       {"port: 22", "port: 0", "0 is not a port"},
		"port too big":    {"port: 22", "port: 65536", "65536 is not a port"},
		"port not number": {"port: 22", "port: ssh", "port"},
		"unknown proto":   {"protocol: redis", "protocol: gopher", `unknown protocol "gopher"`},
		"upper proto":     {"protocol: redis", "protocol: Redis", `unknown protocol "Redis"`},
		"dup port":        {"port: 22", "port: 6379", "6379 declared twice"},
		"dup workload":    {"name: cart", "name: redis", "demo/redis repeats"},
		"bad sidecar":     {"sidecar: envoy", "sidecar: linkerd", `workloads[1].sidecar: "linkerd" is not a sidecar`},
		"bad label":       {"app: redis", "app: 'a b'", "labels"},
		"not yaml":        {"workloads:", "workloads: [", "parse workloads"},
		"top-level field": {"workloads:", "nodes: 1\nworkloads:", "unknown field"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			doc := strings.Replace(sample, c.from, c.to, 1)
			if doc == sample {
				t.Fatalf("case does not change the sample")
			}
			_, err := Parse([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse() = %v, want error containing %q", err, c.want)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	doc := strings.Replace(strings.Replace(sample, "port: 22", "port: 0", 1), "198.18.0.20", "x", 1)
	_, err := Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), "not a port") || !strings.Contains(err.Error(), `"x" is not an IP`) {
		t.Fatalf("Parse() = %v, want both problems", err)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "workloads.yaml")
	if err := os.WriteFile(good, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	tab, err := LoadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tab.Workloads()); n != 3 {
		t.Fatalf("%d workloads, want 3", n)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("workloads: [{name: X}]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("LoadFile(bad) = %v, want an error naming the file", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFile+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(big); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("LoadFile(big) = %v, want a size error", err)
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("LoadFile(missing) succeeded")
	}
}

func TestParseEmpty(t *testing.T) {
	tab, err := Parse(nil)
	if err != nil || len(tab.Workloads()) != 0 {
		t.Fatalf("Parse(nil) = %v, %v", tab, err)
	}
}
