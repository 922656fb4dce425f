package history

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func flow(verb, resource string, verdict bulkheadv1.Verdict, count uint64, at time.Time) *bulkheadv1.Flow {
	f := &bulkheadv1.Flow{
		Direction: bulkheadv1.Direction_DIRECTION_INGRESS,
		SrcIp:     "198.18.0.10", SrcSegment: "demo/cart",
		DstIp: "198.18.0.20", DstSegment: "demo/api", DstPort: 8080, Protocol: "http",
		Verb: verb, Resource: resource, Aux: "api.demo", Verdict: verdict,
		Mode: bulkheadv1.Mode_MODE_MONITOR, Count: count, Bytes: 10 * count,
		FirstSeen: timestamppb.New(at), LastSeen: timestamppb.New(at),
	}
	if verdict == bulkheadv1.Verdict_VERDICT_ALLOW {
		f.Rule = "demo/api/from-cart-http-8080-get"
	} else {
		f.Reason = "l7_not_allowed"
	}
	return f
}

func open(t *testing.T, dir string, c *clock, o Options) *History {
	t.Helper()
	o.Now = c.now
	h, err := Open(dir, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestAggregateAndQuery(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{t: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
	h := open(t, dir, c, Options{})
	at := c.now()
	h.Add("api.demo", []*bulkheadv1.Flow{
		flow("GET", "/users/1", bulkheadv1.Verdict_VERDICT_ALLOW, 2, at),
		flow("GET", "/users/1", bulkheadv1.Verdict_VERDICT_ALLOW, 3, at.Add(time.Second)),
		flow("DELETE", "/users/1", bulkheadv1.Verdict_VERDICT_VIOLATION, 1, at.Add(2*time.Second)),
	})
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.add(time.Minute)
	h.Add("api.demo", []*bulkheadv1.Flow{flow("GET", "/users/1", bulkheadv1.Verdict_VERDICT_ALLOW, 4, c.now())})

	// Query: one record per flow and window (the pending one included).
	all, err := h.Query(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("Query: %d records, want 3: %+v", len(all), all)
	}
	viol, err := h.Query(ctx, Filter{Violations: true, Segment: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if len(viol) != 1 || viol[0].Verb != "DELETE" || viol[0].Segment != "demo/api" || viol[0].Mode != "monitor" ||
		viol[0].Reason != "l7_not_allowed" || viol[0].Resource != "/users/1" || viol[0].Aux != "api.demo" {
		t.Fatalf("violations: %+v", viol)
	}
	// Aggregate: one per flow, counts summed; Get by id likewise.
	agg, err := h.Aggregate(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(agg) != 2 {
		t.Fatalf("Aggregate: %d records, want 2", len(agg))
	}
	get := agg[0]
	if get.Verb != "GET" || get.Count != 9 || !get.FirstSeen.Equal(at) {
		t.Fatalf("aggregated GET: %+v", get)
	}
	got, err := h.Get(ctx, get.ID)
	if err != nil || got.Count != 9 {
		t.Fatalf("Get: %+v, %v", got, err)
	}
	if _, err := h.Get(ctx, "0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an unknown id: %v", err)
	}
	// Since excludes older windows.
	recent, err := h.Query(ctx, Filter{Since: c.now().Add(-time.Second)})
	if err != nil || len(recent) != 1 || recent[0].Count != 4 {
		t.Fatalf("Since: %+v, %v", recent, err)
	}
}

func TestCompactKeepsIDsAndExpires(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{t: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
	h := open(t, dir, c, Options{FileAge: time.Hour, CompactAfter: time.Hour, MaxAge: 24 * time.Hour})
	for i := range 5 {
		h.Add("api.demo", []*bulkheadv1.Flow{flow("GET", "/a", bulkheadv1.Verdict_VERDICT_ALLOW, 1, c.now())})
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		c.add(time.Minute)
		_ = i
	}
	before, _ := h.Aggregate(ctx, Filter{})
	c.add(2 * time.Hour)
	// Files' mtimes are the real clock's; age them to the test clock.
	ageFiles(t, dir, c.now().Add(-90*time.Minute))
	if err := h.Compact(); err != nil {
		t.Fatal(err)
	}
	names := fileNames(t, dir)
	if len(names) != 1 || filepath.Ext(names[0]) != ".jsonl" || names[0][len(names[0])-8:] != ".c.jsonl" {
		t.Fatalf("after compaction: %v", names)
	}
	lines := 0
	readFile(filepath.Join(dir, names[0]), -1, func(*Record) error { lines++; return nil })
	if lines != 1 {
		t.Fatalf("compacted file holds %d records, want 1", lines)
	}
	after, _ := h.Aggregate(ctx, Filter{})
	if len(before) != 1 || len(after) != 1 || before[0].ID != after[0].ID || after[0].Count != 5 {
		t.Fatalf("before %+v, after %+v", before, after)
	}
	// Age: a day later everything goes.
	c.add(25 * time.Hour)
	if err := h.Compact(); err != nil {
		t.Fatal(err)
	}
	if n := fileNames(t, dir); len(n) != 0 {
		t.Fatalf("after MaxAge: %v", n)
	}
}

func TestMaxBytes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{t: time.Now()} // files' times are the real clock's
	h := open(t, dir, c, Options{MaxBytes: 4 << 10, FileBytes: 1 << 10})
	for i := range 40 {
		h.Add("api.demo", []*bulkheadv1.Flow{flow("GET", "/p/"+string(rune('a'+i%26))+string(rune('a'+i/26)), bulkheadv1.Verdict_VERDICT_ALLOW, 1, c.now().Add(time.Duration(i)*time.Millisecond))})
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s := h.Stats(); s.Bytes <= 4<<10 {
		t.Fatalf("test wrote only %d bytes", s.Bytes)
	}
	if err := h.Compact(); err != nil {
		t.Fatal(err)
	}
	s := h.Stats()
	if s.Bytes > 4<<10 || s.Files == 0 {
		t.Fatalf("after compaction: %+v", s)
	}
	// The newest records are the ones kept.
	recs, _ := h.Query(ctx, Filter{Limit: 1})
	if len(recs) != 1 || recs[0].Resource != "/p/nb" {
		t.Fatalf("newest: %+v", recs)
	}
}

func TestTruncatedLineSkipped(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{t: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
	h := open(t, dir, c, Options{})
	h.Add("n", []*bulkheadv1.Flow{flow("GET", "/a", bulkheadv1.Verdict_VERDICT_ALLOW, 1, c.now())})
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	names := fileNames(t, dir)
	f, err := os.OpenFile(filepath.Join(dir, names[0]), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":"abc","verb":"GE`)
	f.Close()
	recs, err := h.Query(ctx, Filter{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("%+v, %v", recs, err)
	}
}

func TestExporters(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	sock := filepath.Join(dir, "export.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan Record, 10)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var r Record
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				got <- r
			}
		}
	}()
	fx, closer, err := OpenFile(filepath.Join(dir, "export.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	sx := NewSocket("unix", sock, time.Second)
	h, err := Open(filepath.Join(dir, "history"), Options{Window: 10 * time.Millisecond, Exporters: []Exporter{fx, sx}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Start(ctx) }()
	h.Add("api.demo", []*bulkheadv1.Flow{flow("POST", "/orders", bulkheadv1.Verdict_VERDICT_DENY, 1, time.Now())})
	select {
	case r := <-got:
		if r.Verb != "POST" || r.Verdict != "deny" || r.Segment != "demo/api" || r.ID == "" {
			t.Fatalf("exported: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing exported to the socket")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sx.Close()
	closer.Close()
	b, err := os.ReadFile(filepath.Join(dir, "export.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil || r.Resource != "/orders" {
		t.Fatalf("file export %q: %v", b, err)
	}
}

func ageFiles(t *testing.T, dir string, at time.Time) {
	t.Helper()
	for _, n := range fileNames(t, dir) {
		if err := os.Chtimes(filepath.Join(dir, n), at, at); err != nil {
			t.Fatal(err)
		}
	}
}

func fileNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
