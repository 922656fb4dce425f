package v1alpha1

import (
	"strings"
	"testing"
)

const sample = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata:
  name: redis
  namespace: demo
spec:
  mode: protect
  ingress:
  - name: from-cart-redis-6379
    origin: learned
    peers:
    - segment: cart
    ports:
    - port: 6379
      protocol: redis
    redis:
      commands: [SET, get, GET]
`

func TestYAMLRoundTrip(t *testing.T) {
	ps, err := UnmarshalYAML([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Validate() != nil {
		t.Fatalf("got %d policies, validate: %v", len(ps), ps[0].Validate())
	}
	out, err := MarshalYAML(ps)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "- get\n") || strings.Contains(string(out), "status") || strings.Contains(string(out), "creationTimestamp") {
		t.Fatalf("export form wrong:\n%s", out)
	}
	ps2, err := UnmarshalYAML(out)
	if err != nil {
		t.Fatal(err)
	}
	out2, _ := MarshalYAML(ps2)
	if string(out) != string(out2) {
		t.Fatalf("second export differs:\n%s\n---\n%s", out, out2)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field": strings.Replace(sample, "mode: protect", "mode: protect\n  bogus: 1", 1),
		"other kind":    strings.Replace(sample, "kind: SegmentPolicy", "kind: Pod", 1),
		"bad version":   strings.Replace(sample, "v1alpha1", "v9", 1),
	} {
		if _, err := UnmarshalYAML([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	cases := map[string]struct{ from, to, want string }{
		"mode":       {"mode: protect", "mode: enforce", "unknown mode"},
		"protocol":   {"protocol: redis", "protocol: gopher", "unknown protocol"},
		"cidr":       {"segment: cart", "cidr: 300.1.1.1/8", "bad CIDR"},
		"empty port": {"    - port: 6379\n      protocol: redis\n", "", "at least one port"},
		"port range": {"port: 6379", "port: 70000", "not a port"},
		"selector":   {"mode: protect", "mode: protect\n  selector: {matchExpressions: [{key: a, operator: Near}]}", "spec.selector"},
	}
	for name, c := range cases {
		ps, err := UnmarshalYAML([]byte(strings.Replace(sample, c.from, c.to, 1)))
		if err != nil {
			if strings.Contains(err.Error(), c.want) {
				continue
			}
			t.Errorf("%s: unmarshal: %v", name, err)
			continue
		}
		err = ps[0].Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want %q", name, err, c.want)
		}
	}
}
