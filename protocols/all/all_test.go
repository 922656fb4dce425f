package all

import (
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

func TestProtocols(t *testing.T) {
	ps := Protocols()
	if len(ps) == 0 {
		t.Fatal("no protocols")
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if p.Name == "" || p.Name != strings.ToLower(strings.TrimSpace(p.Name)) {
			t.Errorf("protocol name %q: want non-empty, lower case, no spaces", p.Name)
		}
		if seen[p.Name] {
			t.Errorf("protocol %q listed twice", p.Name)
		}
		seen[p.Name] = true
		if p.New == nil || p.Deny == nil {
			t.Errorf("%s: New or Deny is nil", p.Name)
			continue
		}
		a, b := p.New(), p.New()
		if a == nil || a == b {
			t.Errorf("%s: New must return a new parser on each call", p.Name)
		}
		if out := p.Deny(nil, &l7.Frame{Verb: []byte("X")}, "test"); len(out) == 0 {
			t.Errorf("%s: Deny appended nothing", p.Name)
		}
	}
	if !seen["redis"] {
		t.Error("redis is not listed")
	}
}

func TestProtocolsReturnsACopy(t *testing.T) {
	ps := Protocols()
	ps[0].Name = "changed"
	if Protocols()[0].Name == "changed" {
		t.Fatal("Protocols shares its slice between calls")
	}
}

func TestByName(t *testing.T) {
	for _, p := range Protocols() {
		got, ok := ByName(p.Name)
		if !ok || got.Name != p.Name {
			t.Errorf("ByName(%q) = %q, %v", p.Name, got.Name, ok)
		}
	}
	for _, name := range []string{"", "tcp", "REDIS", "nope"} {
		if p, ok := ByName(name); ok {
			t.Errorf("ByName(%q) = %q, want not found", name, p.Name)
		}
	}
}
