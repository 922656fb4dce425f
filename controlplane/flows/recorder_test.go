package flows

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// flow builds an ingress Redis flow from cart to redis in namespace demo.
func flow(verb string, verdict bulkheadv1.Verdict, count uint64, first, last time.Duration) *bulkheadv1.Flow {
	f := &bulkheadv1.Flow{
		Direction: bulkheadv1.Direction_DIRECTION_INGRESS,
		SrcIp:     "198.18.0.10", SrcSegment: "demo/cart",
		DstIp: "198.18.0.20", DstSegment: "demo/redis", DstPort: 6379,
		Protocol: "redis", Verb: verb, Verdict: verdict, Mode: bulkheadv1.Mode_MODE_MONITOR,
		Count: count, Bytes: 10 * count,
		FirstSeen: timestamppb.New(t0.Add(first)), LastSeen: timestamppb.New(t0.Add(last)),
	}
	switch verdict {
	case bulkheadv1.Verdict_VERDICT_ALLOW:
		f.Rule = "demo/redis/from-cart"
	default:
		f.Reason = "command not allowed"
	}
	return f
}

func verbs(rs []Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s/%s/%d", r.Verb, r.Verdict, r.Count))
	}
	return out
}

func TestRecorderAggregates(t *testing.T) {
	r := NewRecorder(Options{Now: func() time.Time { return t0 }})
	r.Record("redis.demo", []*bulkheadv1.Flow{
		flow("GET", bulkheadv1.Verdict_VERDICT_ALLOW, 3, 0, time.Second),
		flow("SET", bulkheadv1.Verdict_VERDICT_ALLOW, 1, 0, time.Second),
	})
	r.Record("redis.demo2", []*bulkheadv1.Flow{
		flow("GET", bulkheadv1.Verdict_VERDICT_ALLOW, 2, -time.Second, 5*time.Second),
		flow("GET", bulkheadv1.Verdict_VERDICT_VIOLATION, 7, 0, 2*time.Second),
	})
	got := r.Flows(Filter{})
	want := []Record{
		{
			Direction: "ingress", SrcIP: "198.18.0.10", SrcSegment: "demo/cart", DstIP: "198.18.0.20", DstSegment: "demo/redis",
			DstPort: 6379, Protocol: "redis", Verb: "GET", Verdict: "allow", Mode: "monitor", Rule: "demo/redis/from-cart",
			Count: 5, Bytes: 50, FirstSeen: t0.Add(-time.Second), LastSeen: t0.Add(5 * time.Second), Node: "redis.demo2",
		},
		{
			Direction: "ingress", SrcIP: "198.18.0.10", SrcSegment: "demo/cart", DstIP: "198.18.0.20", DstSegment: "demo/redis",
			DstPort: 6379, Protocol: "redis", Verb: "GET", Verdict: "violation", Mode: "monitor", Reason: "command not allowed",
			Count: 7, Bytes: 70, FirstSeen: t0, LastSeen: t0.Add(2 * time.Second), Node: "redis.demo2",
		},
		{
			Direction: "ingress", SrcIP: "198.18.0.10", SrcSegment: "demo/cart", DstIP: "198.18.0.20", DstSegment: "demo/redis",
			DstPort: 6379, Protocol: "redis", Verb: "SET", Verdict: "allow", Mode: "monitor", Rule: "demo/redis/from-cart",
			Count: 1, Bytes: 10, FirstSeen: t0, LastSeen: t0.Add(time.Second), Node: "redis.demo",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Flows (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"GET/violation/7"}, verbs(r.Violations(Filter{}))); diff != "" {
		t.Errorf("Violations (-want +got):\n%s", diff)
	}
	if got := r.Flows(Filter{Limit: 1}); len(got) != 1 || got[0].Count != 5 {
		t.Errorf("Flows(limit 1) = %+v", got)
	}
}

func TestRecorderJSONFields(t *testing.T) {
	r := NewRecorder(Options{})
	r.Record("redis.demo", []*bulkheadv1.Flow{flow("GET", bulkheadv1.Verdict_VERDICT_DENY, 1, 0, 0)})
	b, err := json.Marshal(r.Violations(Filter{})[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	want := []string{"aux", "bytes", "count", "direction", "dstIP", "dstPort", "dstSegment", "firstSeen", "lastSeen", "mode", "node",
		"protocol", "reason", "resource", "rule", "srcIP", "srcSegment", "sub", "verb", "verdict"}
	if diff := cmp.Diff(want, keys, cmpSorted); diff != "" {
		t.Errorf("JSON keys (-want +got):\n%s", diff)
	}
	if m["verdict"] != "deny" || m["mode"] != "monitor" || m["firstSeen"] != "2026-03-01T12:00:00Z" {
		t.Errorf("JSON = %s", b)
	}
}

var cmpSorted = cmpopts.SortSlices(func(a, b string) bool { return a < b })

func TestRecorderEvictsLeastRecentlySeen(t *testing.T) {
	r := NewRecorder(Options{MaxFlows: 2})
	allow := bulkheadv1.Verdict_VERDICT_ALLOW
	r.Record("n", []*bulkheadv1.Flow{flow("GET", allow, 1, 0, 0)})
	r.Record("n", []*bulkheadv1.Flow{flow("SET", allow, 1, 0, time.Second)})
	r.Record("n", []*bulkheadv1.Flow{flow("GET", allow, 1, 0, 2*time.Second)}) // GET seen again: SET is the oldest
	r.Record("n", []*bulkheadv1.Flow{flow("DEL", allow, 1, 0, 3*time.Second)})
	if diff := cmp.Diff([]string{"DEL/allow/1", "GET/allow/2"}, verbs(r.Flows(Filter{}))); diff != "" {
		t.Errorf("Flows (-want +got):\n%s", diff)
	}
	if st := r.Stats(); st != (Stats{Flows: 2, FlowEvictions: 1}) {
		t.Errorf("Stats = %+v", st)
	}
	r.Record("n", []*bulkheadv1.Flow{flow("SET", allow, 1, 0, 4*time.Second)})
	if diff := cmp.Diff([]string{"SET/allow/1", "DEL/allow/1"}, verbs(r.Flows(Filter{}))); diff != "" {
		t.Errorf("Flows after SET again (-want +got):\n%s", diff)
	}
}

func TestRecorderViolationRing(t *testing.T) {
	r := NewRecorder(Options{MaxViolations: 3})
	for i := range 5 {
		v := bulkheadv1.Verdict_VERDICT_VIOLATION
		if i%2 == 1 {
			v = bulkheadv1.Verdict_VERDICT_DENY
		}
		r.Record("n", []*bulkheadv1.Flow{
			flow(fmt.Sprintf("V%d", i), v, 1, 0, 0),
			flow("GET", bulkheadv1.Verdict_VERDICT_ALLOW, 1, 0, 0), // not a violation
		})
	}
	if diff := cmp.Diff([]string{"V4/violation/1", "V3/deny/1", "V2/violation/1"}, verbs(r.Violations(Filter{}))); diff != "" {
		t.Errorf("Violations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"V4/violation/1", "V3/deny/1"}, verbs(r.Violations(Filter{Limit: 2}))); diff != "" {
		t.Errorf("Violations(limit 2) (-want +got):\n%s", diff)
	}
	if st := r.Stats(); st.Violations != 3 || st.ViolationEvictions != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestFilterSegment(t *testing.T) {
	r := NewRecorder(Options{})
	web := flow("GET", bulkheadv1.Verdict_VERDICT_VIOLATION, 1, 0, 0)
	web.SrcSegment, web.DstSegment, web.DstIp = "shop/web", "shop/api", "198.18.0.30"
	r.Record("n", []*bulkheadv1.Flow{flow("SET", bulkheadv1.Verdict_VERDICT_VIOLATION, 1, 0, 0), web})
	for _, tc := range []struct {
		segment string
		want    []string
	}{
		{"", []string{"GET/violation/1", "SET/violation/1"}},
		{"demo/cart", []string{"SET/violation/1"}},
		{"demo/redis", []string{"SET/violation/1"}},
		{"shop/api", []string{"GET/violation/1"}},
		{"shop", []string{"GET/violation/1"}},
		{"sho", nil},
		{"demo/nope", nil},
	} {
		t.Run(tc.segment, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, verbs(r.Violations(Filter{Segment: tc.segment}))); diff != "" {
				t.Errorf("Violations (-want +got):\n%s", diff)
			}
			flows := verbs(r.Flows(Filter{Segment: tc.segment}))
			if len(flows) != len(tc.want) {
				t.Errorf("Flows = %v, want %d records", flows, len(tc.want))
			}
		})
	}
}

// sqlFlow is a monitor-mode MySQL statement from cart to db.
func sqlFlow(verb, db string, tables ...string) *bulkheadv1.Flow {
	f := flow(verb, bulkheadv1.Verdict_VERDICT_VIOLATION, 1, 0, 0)
	f.Protocol, f.DstPort, f.DstSegment, f.Aux = "mysql", 3306, "demo/db", db
	if len(tables) > 0 {
		f.Resource, f.MoreResources = tables[0], tables[1:]
	}
	return f
}

func TestRecorderL7Fields(t *testing.T) {
	r := NewRecorder(Options{})
	join := sqlFlow("SELECT", "shop", "orders", "users")
	r.Record("db.demo", []*bulkheadv1.Flow{
		join,
		sqlFlow("SELECT", "shop", "orders", "users"), // same key: aggregated
		sqlFlow("SELECT", "shop", "orders"),          // fewer tables: its own record
		sqlFlow("SELECT", "shop", "orders", "items"), // other tables
		sqlFlow("SELECT", "app", "orders", "users"),  // other database
		sqlFlow("SELECT", "shop", "users", "orders"), // other order
	})
	type l7 struct {
		Resource, Aux string
		More          []string
		Count         uint64
	}
	var got []l7
	for _, rec := range r.Flows(Filter{}) {
		got = append(got, l7{rec.Resource, rec.Aux, rec.MoreResources, rec.Count})
	}
	want := []l7{
		{"orders", "shop", []string{"users"}, 2},
		{"orders", "shop", nil, 1},
		{"orders", "shop", []string{"items"}, 1},
		{"orders", "app", []string{"users"}, 1},
		{"users", "shop", []string{"orders"}, 1},
	}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b l7) bool { return fmt.Sprint(a) < fmt.Sprint(b) })); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	// Records are copies: neither the report nor a caller changes them.
	join.MoreResources[0] = "changed"
	r.Violations(Filter{})[0].MoreResources[0] = "changed"
	for _, rec := range append(r.Flows(Filter{}), r.Violations(Filter{})...) {
		if slices.Contains(rec.MoreResources, "changed") {
			t.Fatalf("record changed through a shared slice: %+v", rec)
		}
	}
	b, err := json.Marshal(r.Violations(Filter{Limit: 1})[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := `"resource":"users","aux":"shop","moreResources":["orders"]`; !strings.Contains(string(b), want) {
		t.Errorf("JSON %s lacks %s", b, want)
	}
}
