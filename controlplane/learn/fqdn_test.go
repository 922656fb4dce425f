package learn

import (
	"bytes"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/google/go-cmp/cmp"
)

// egressFlow is a discover-mode egress flow of demo/web to 203.0.113.7
// (not a workload), reached through name.
func egressFlow(name string, port uint32, proto, verb, resource string) *bulkheadv1.Flow {
	return &bulkheadv1.Flow{
		Direction: out, SrcIp: "198.18.0.20", SrcSegment: "demo/web", DstIp: "203.0.113.7",
		DstPort: port, Protocol: proto, Verb: verb, Resource: resource, Connection: verb == "",
		Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Reason: "no_rule", Mode: bulkheadv1.Mode_MODE_DISCOVER, Count: 1,
		DstName: name,
	}
}

func TestLearnFQDN(t *testing.T) {
	flows := []*bulkheadv1.Flow{
		egressFlow("api.example.com", 443, "tcp", "", ""),
		egressFlow("api.example.com", 443, "tls", "CLIENT_HELLO", "api.example.com"),
		egressFlow("api.example.com", 80, "http", "GET", "/users/1"),
		egressFlow("_srv.cdn.example.net", 443, "tcp", "", ""),
		// No name: the address, as before.
		egressFlow("", 8443, "tcp", "", ""),
		// A name that is not one (a proxy would never send it): the
		// address.
		egressFlow("Bad Name", 9443, "tcp", "", ""),
		// A known workload is named by its segment, whatever the name.
		with(egressFlow("redis.demo.svc", 6379, "tcp", "", ""), func(f *bulkheadv1.Flow) {
			f.DstIp, f.DstSegment = "198.18.0.10", "demo/redis"
		}),
		// An ingress flow names no destination: the source's address.
		with(egressFlow("api.example.com", 8080, "tcp", "", ""), func(f *bulkheadv1.Flow) {
			f.Direction, f.SrcSegment, f.DstSegment = in, "", "demo/web"
		}),
	}
	st := newStore(t)
	l := New(st, nil)
	l.Observe("web.demo", flows)
	want := head + `  name: web
  namespace: demo
spec:
  egress:
  - name: to--srv-cdn-example-net-tcp-443
    origin: learned
    peers:
    - fqdn: _srv.cdn.example.net
    ports:
    - port: 443
      protocol: tcp
  - name: to-203-0-113-7-tcp-8443
    origin: learned
    peers:
    - cidr: 203.0.113.7/32
    ports:
    - port: 8443
      protocol: tcp
  - name: to-203-0-113-7-tcp-9443
    origin: learned
    peers:
    - cidr: 203.0.113.7/32
    ports:
    - port: 9443
      protocol: tcp
  - http:
      methods:
      - GET
      paths:
      - /users/{id}
    name: to-api-example-com-http-80-get
    origin: learned
    peers:
    - fqdn: api.example.com
    ports:
    - port: 80
      protocol: http
  - name: to-api-example-com-tcp-443
    origin: learned
    peers:
    - fqdn: api.example.com
    ports:
    - port: 443
      protocol: tcp
  - name: to-api-example-com-tls-443
    origin: learned
    peers:
    - fqdn: api.example.com
    ports:
    - port: 443
      protocol: tls
    tls:
      serverNames:
      - api.example.com
  - name: to-redis-tcp-6379
    origin: learned
    peers:
    - segment: redis
    ports:
    - port: 6379
      protocol: tcp
  ingress:
  - name: from-198-18-0-20-tcp-8080
    origin: learned
    peers:
    - cidr: 198.18.0.20/32
    ports:
    - port: 8080
      protocol: tcp
`
	got := export(t, st)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("export (-want +got):\n%s", diff)
	}
	p, ok := st.Get("demo", "web")
	if !ok {
		t.Fatal("no policy demo/web")
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("the learned policy does not validate: %v", err)
	}
	for _, r := range p.Spec.Egress {
		if r.Name == "to-api-example-com-tcp-443" {
			lf := r.LearnedFrom
			if lf == nil || lf.Node != "web.demo" || lf.Peer != "203.0.113.7" || !strings.Contains(lf.Flow, "203.0.113.7:443/tcp") {
				t.Errorf("learnedFrom = %+v", lf)
			}
		}
	}
	// Idempotent: the same flows again change nothing, and the export
	// applies unchanged.
	changed(st)
	raw, err := st.Export("")
	if err != nil {
		t.Fatal(err)
	}
	l.Observe("web.demo", flows)
	if changed(st) {
		t.Fatal("the same flows changed the store again")
	}
	if again, _ := st.Export(""); !bytes.Equal(again, raw) {
		t.Fatalf("second export differs:\n%s", again)
	}
	ps, err := v1alpha1.UnmarshalYAML(raw)
	if err != nil {
		t.Fatal(err)
	}
	if names, err := st.Apply(ps); err != nil || len(names) != 0 || changed(st) {
		t.Fatalf("Apply(export) = %v, %v; want no change", names, err)
	}
}

func TestLearnFQDNLongName(t *testing.T) {
	// Two 253-byte names that differ only at their end.
	label := strings.Repeat("a", 62)
	base := strings.Join([]string{label, label, label, label[:61]}, ".") // 250 bytes
	n1, n2 := base+".xy", base+".xz"
	if !bulkheadv1.ValidDstName(n1) || len(n1) != bulkheadv1.MaxDstName {
		t.Fatalf("test name of %d bytes not valid", len(n1))
	}
	st := newStore(t)
	New(st, nil).Observe("web.demo", []*bulkheadv1.Flow{
		egressFlow(n1, 443, "tcp", "", ""),
		egressFlow(n2, 443, "tcp", "", ""),
	})
	p, ok := st.Get("demo", "web")
	if !ok || len(p.Spec.Egress) != 2 {
		t.Fatalf("policy: %+v", p)
	}
	seen := map[string]bool{}
	for _, r := range p.Spec.Egress {
		if len(r.Name) > MaxName || !strings.HasPrefix(r.Name, "to-"+label[:20]) {
			t.Errorf("name %q (%d bytes)", r.Name, len(r.Name))
		}
		if len(r.Peers) != 1 || (r.Peers[0].FQDN != n1 && r.Peers[0].FQDN != n2) {
			t.Errorf("peers %+v", r.Peers)
		}
		seen[r.Name] = true
	}
	if len(seen) != 2 {
		t.Error("two long names collide")
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}
