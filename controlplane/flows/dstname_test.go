package flows

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"google.golang.org/protobuf/proto"
)

// namedFlow is an egress TLS flow of demo/cart to an external address
// reached through name.
func namedFlow(name string) *bulkheadv1.Flow {
	f := flow("CLIENT_HELLO", bulkheadv1.Verdict_VERDICT_ALLOW, 1, 0, 0)
	f.Direction, f.DstIp, f.DstSegment, f.DstPort, f.Protocol = bulkheadv1.Direction_DIRECTION_EGRESS, "203.0.113.7", "", 443, "tls"
	f.Rule, f.DstName = "", name
	return f
}

func TestValidFlowDstName(t *testing.T) {
	long := strings.Repeat("a.", 126) + "b" // 253 bytes
	for _, name := range []string{"", "api.example.com", "_srv._tcp.example.com", long} {
		if err := validFlow(namedFlow(name)); err != nil {
			t.Errorf("dst_name %q: %v", name, err)
		}
	}
	for _, tc := range []struct {
		name, want string // want: in the error
		edit       func(f *bulkheadv1.Flow)
	}{
		{"too long", "dst_name of 254 bytes", func(f *bulkheadv1.Flow) { f.DstName = long + "c" }},
		{"upper case", "is not a DNS name", func(f *bulkheadv1.Flow) { f.DstName = "API.example.com" }},
		{"final dot", "is not a DNS name", func(f *bulkheadv1.Flow) { f.DstName = "api.example.com." }},
		{"wildcard", "is not a DNS name", func(f *bulkheadv1.Flow) { f.DstName = "*.example.com" }},
		{"ingress", "dst_name on an ingress flow", func(f *bulkheadv1.Flow) { f.Direction = bulkheadv1.Direction_DIRECTION_INGRESS }},
	} {
		f := proto.Clone(namedFlow("api.example.com")).(*bulkheadv1.Flow)
		tc.edit(f)
		if err := validFlow(f); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: validFlow = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

func TestRecorderDstName(t *testing.T) {
	r := NewRecorder(Options{})
	r.Record("cart.demo", []*bulkheadv1.Flow{
		namedFlow("api.example.com"), namedFlow("api.example.com"), namedFlow("cdn.example.net"), namedFlow(""),
	})
	got := map[string]uint64{}
	for _, rec := range r.Flows(Filter{}) {
		got[rec.DstName] += rec.Count
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(b), `"dstName":`); has != (rec.DstName != "") {
			t.Errorf("JSON %s: dstName present %v", b, has)
		}
		if rec.DstName != "" && !strings.Contains(string(b), `"dstName":"`+rec.DstName+`"`) {
			t.Errorf("JSON %s lacks dstName %q", b, rec.DstName)
		}
	}
	want := map[string]uint64{"api.example.com": 2, "cdn.example.net": 1, "": 1}
	if len(got) != len(want) || got["api.example.com"] != 2 || got["cdn.example.net"] != 1 || got[""] != 1 {
		t.Errorf("counts by name = %v, want %v (flows differing by name are distinct)", got, want)
	}
}
