package cli

import (
	"encoding/json"
	"testing"
)

// TestFlowRowsDstName: an egress flow to an address outside the cluster
// shows the name the workload resolved; a workload's segment still wins.
func TestFlowRowsDstName(t *testing.T) {
	var recs []FlowRecord
	if err := json.Unmarshal([]byte(`[
		{"direction": "egress", "srcIP": "198.18.1.2", "srcSegment": "demo/web", "dstIP": "203.0.113.7", "dstName": "api.example.com", "dstPort": 443, "protocol": "tls"},
		{"direction": "egress", "srcIP": "198.18.1.2", "srcSegment": "demo/web", "dstIP": "198.18.1.3", "dstSegment": "demo/redis", "dstName": "redis.internal", "dstPort": 6379, "protocol": "redis"},
		{"direction": "egress", "srcIP": "198.18.1.2", "srcSegment": "demo/web", "dstIP": "203.0.113.8", "dstPort": 443, "protocol": "tls"}
	]`), &recs); err != nil {
		t.Fatal(err)
	}
	var tb table
	flowRows(&tb, recs, false)
	want := []string{"api.example.com (203.0.113.7:443)", "demo/redis (198.18.1.3:6379)", "203.0.113.8:443"}
	for i, w := range want {
		if got := tb.rows[i+1][3]; got != w {
			t.Errorf("row %d destination %q, want %q", i, got, w)
		}
	}
}
