package bulkheadv1

import (
	"strings"
	"testing"
)

func TestValidDstName(t *testing.T) {
	long := strings.Repeat("a.", 126) + "b" // 253 bytes
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"api.example.com", true},
		{"localhost", true},
		{"_srv._tcp.example.com", true},
		{"a-b.c_d.e", true},
		{strings.Repeat("x", 63) + ".com", true},
		{long, true},
		{"", false},
		{long + "c", false},
		{strings.Repeat("x", 64) + ".com", false},
		{"API.example.com", false},
		{"api.example.com.", false},
		{".example.com", false},
		{"a..b", false},
		{"-a.b", false},
		{"a-.b", false},
		{"*.example.com", false},
		{"a b", false},
		{"a\x00b", false},
		{"caf\xc3\xa9.com", false},
	} {
		if got := ValidDstName(tc.name); got != tc.ok {
			t.Errorf("ValidDstName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
		if got := ValidDstName([]byte(tc.name)); got != tc.ok {
			t.Errorf("ValidDstName([]byte(%q)) = %v, want %v", tc.name, got, tc.ok)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ValidDstName(long) }); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

func FuzzValidDstName(f *testing.F) {
	f.Add("api.example.com")
	f.Add("a..b")
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidDstName(s) {
			return
		}
		if len(s) > MaxDstName || s != strings.ToLower(s) || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
			t.Fatalf("ValidDstName(%q) = true", s)
		}
	})
}
