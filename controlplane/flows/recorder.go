// Package flows receives the flow reports of the proxies (gRPC FlowService)
// and keeps what operators look at: a bounded table of aggregated flows and a
// bounded ring of recent violations. Each batch is also handed to the learner
// (rules of discover-mode segments) and to the store (rule hits, violation
// counts), and violations are logged and counted in metrics.
package flows

import (
	"container/list"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// Options bounds a Recorder. The zero value uses the defaults.
type Options struct {
	// MaxFlows bounds the aggregated flow table; the least recently seen
	// flow is evicted first. Zero: 10000.
	MaxFlows int
	// MaxViolations bounds the ring of recent violations. Zero: 1000.
	MaxViolations int
	// Now is the clock used for flows without timestamps. Nil: time.Now.
	Now func() time.Time
}

// Record is one flow or violation as the admin API shows it (JSON).
type Record struct {
	Direction  string `json:"direction"` // "ingress", "egress"
	SrcIP      string `json:"srcIP"`
	SrcSegment string `json:"srcSegment"`
	DstIP      string `json:"dstIP"`
	DstSegment string `json:"dstSegment"`
	DstPort    uint32 `json:"dstPort"`
	Protocol   string `json:"protocol"`
	Verb       string `json:"verb"`
	Sub        string `json:"sub"`
	// Resource, Aux and MoreResources are the L7 detail beyond the verb
	// (path, table, topic, name…; host, database, client id…; the further
	// resources of a message), see docs/contracts.md, "L7 frames".
	Resource      string   `json:"resource"`
	Aux           string   `json:"aux"`
	MoreResources []string `json:"moreResources,omitempty"`
	// DstName is the DNS name an egress flow's destination was resolved
	// from (Flow.dst_name), empty when none.
	DstName   string    `json:"dstName,omitempty"`
	Verdict   string    `json:"verdict"` // "allow", "violation", "deny"
	Mode      string    `json:"mode"`    // "discover", "monitor", "protect"
	Rule      string    `json:"rule"`
	Reason    string    `json:"reason"`
	Count     uint64    `json:"count"`
	Bytes     uint64    `json:"bytes"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
	Node      string    `json:"node"`
}

// clone copies r, its slice included.
func (r *Record) clone() Record {
	c := *r
	c.MoreResources = slices.Clone(r.MoreResources)
	return c
}

// Filter selects records.
type Filter struct {
	// Segment keeps records whose source or destination segment is this
	// "namespace/name"; a bare "namespace" keeps those of any segment of
	// that namespace. Empty: all.
	Segment string
	// Limit bounds the number of records returned. Zero or less: no bound
	// (the tables are bounded anyway).
	Limit int
}

func (f Filter) match(r *Record) bool {
	if f.Segment == "" {
		return true
	}
	if strings.Contains(f.Segment, "/") {
		return r.SrcSegment == f.Segment || r.DstSegment == f.Segment
	}
	return inNamespace(r.SrcSegment, f.Segment) || inNamespace(r.DstSegment, f.Segment)
}

func inNamespace(segmentKey, ns string) bool {
	return len(segmentKey) > len(ns) && segmentKey[len(ns)] == '/' && strings.HasPrefix(segmentKey, ns)
}

// Stats are the Recorder's sizes and eviction counts.
type Stats struct {
	Flows              int
	Violations         int
	FlowEvictions      uint64
	ViolationEvictions uint64
}

// flowKey is what a flow aggregates by: every field but the counters, times,
// segments, mode, reason and node, which are taken from the newest report.
type flowKey struct {
	dir      bulkheadv1.Direction
	src, dst string
	port     uint32
	protocol string
	verb     string
	sub      string
	resource string
	aux      string
	more     string // MoreResources joined by NUL
	dstName  string
	verdict  bulkheadv1.Verdict
	rule     string
}

type entry struct {
	key flowKey
	rec Record
}

// Recorder keeps bounded, aggregated records of flows and a ring of recent
// violations. It is safe for concurrent use.
type Recorder struct {
	maxFlows, maxViolations int
	now                     func() time.Time

	mu         sync.Mutex
	flows      map[flowKey]*list.Element // of *entry
	lru        *list.List                // front: most recently seen
	ring       []Record                  // violations; ring[next-1] is the newest
	next       int
	flowEvicts uint64
	violEvicts uint64
}

// NewRecorder builds an empty Recorder.
func NewRecorder(opts Options) *Recorder {
	if opts.MaxFlows <= 0 {
		opts.MaxFlows = 10000
	}
	if opts.MaxViolations <= 0 {
		opts.MaxViolations = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Recorder{
		maxFlows:      opts.MaxFlows,
		maxViolations: opts.MaxViolations,
		now:           opts.Now,
		flows:         make(map[flowKey]*list.Element),
		lru:           list.New(),
		ring:          make([]Record, 0, min(opts.MaxViolations, 1024)),
	}
}

// IsViolation reports whether a flow is reported as a violation: verdict
// VIOLATION (allowed, reported) or DENY (blocked, reported).
func IsViolation(f *bulkheadv1.Flow) bool {
	v := f.GetVerdict()
	return v == bulkheadv1.Verdict_VERDICT_VIOLATION || v == bulkheadv1.Verdict_VERDICT_DENY
}

// Record adds flows reported by node: each is merged into the flow table
// (counts and bytes added, first/last seen widened, the rest taken from the
// newest report) and each violation is appended to the ring as reported.
func (r *Recorder) Record(node string, flows []*bulkheadv1.Flow) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range flows {
		if f == nil {
			continue
		}
		rec := toRecord(node, f, now)
		k := flowKey{
			dir: f.GetDirection(), src: f.GetSrcIp(), dst: f.GetDstIp(), port: f.GetDstPort(),
			protocol: f.GetProtocol(), verb: f.GetVerb(), sub: f.GetSub(), verdict: f.GetVerdict(), rule: f.GetRule(),
			resource: f.GetResource(), aux: f.GetAux(), more: strings.Join(f.GetMoreResources(), "\x00"),
			dstName: f.GetDstName(),
		}
		if el, ok := r.flows[k]; ok {
			cur := &el.Value.(*entry).rec
			cur.Count += rec.Count
			cur.Bytes += rec.Bytes
			if rec.FirstSeen.Before(cur.FirstSeen) {
				cur.FirstSeen = rec.FirstSeen
			}
			if rec.LastSeen.After(cur.LastSeen) {
				cur.LastSeen = rec.LastSeen
			}
			cur.SrcSegment, cur.DstSegment = rec.SrcSegment, rec.DstSegment
			cur.Mode, cur.Reason, cur.Node = rec.Mode, rec.Reason, rec.Node
			r.lru.MoveToFront(el)
		} else {
			if len(r.flows) >= r.maxFlows {
				oldest := r.lru.Back()
				delete(r.flows, oldest.Value.(*entry).key)
				r.lru.Remove(oldest)
				r.flowEvicts++
			}
			r.flows[k] = r.lru.PushFront(&entry{key: k, rec: rec})
		}
		if IsViolation(f) {
			r.addViolation(rec)
		}
	}
}

func (r *Recorder) addViolation(rec Record) {
	if len(r.ring) < r.maxViolations {
		r.ring = append(r.ring, rec)
		r.next = len(r.ring) % r.maxViolations
		return
	}
	r.ring[r.next] = rec
	r.next = (r.next + 1) % r.maxViolations
	r.violEvicts++
}

// Flows returns the aggregated flow records that match f, the most recently
// seen first. The records are copies.
func (r *Recorder) Flows(f Filter) []Record {
	r.mu.Lock()
	out := make([]Record, 0, min(r.lru.Len(), limitOr(f.Limit, r.lru.Len())))
	for el := r.lru.Front(); el != nil; el = el.Next() {
		if rec := &el.Value.(*entry).rec; f.match(rec) {
			out = append(out, rec.clone())
		}
	}
	r.mu.Unlock()
	// The table is in order of reports; a report may carry older flows.
	slices.SortStableFunc(out, func(a, b Record) int { return b.LastSeen.Compare(a.LastSeen) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

// Violations returns the recent violation records that match f, newest
// first. The records are copies.
func (r *Recorder) Violations(f Filter) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.ring)
	out := make([]Record, 0, min(n, limitOr(f.Limit, n)))
	for i := 1; i <= n; i++ {
		rec := &r.ring[(r.next-i+n)%n]
		if !f.match(rec) {
			continue
		}
		out = append(out, rec.clone())
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out
}

// Stats returns the sizes of the tables and how many records each evicted.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{Flows: len(r.flows), Violations: len(r.ring), FlowEvictions: r.flowEvicts, ViolationEvictions: r.violEvicts}
}

func limitOr(limit, n int) int {
	if limit > 0 {
		return limit
	}
	return n
}

func toRecord(node string, f *bulkheadv1.Flow, now time.Time) Record {
	rec := Record{
		Direction:  directionName(f.GetDirection()),
		SrcIP:      f.GetSrcIp(),
		SrcSegment: f.GetSrcSegment(),
		DstIP:      f.GetDstIp(),
		DstSegment: f.GetDstSegment(),
		DstPort:    f.GetDstPort(),
		Protocol:   f.GetProtocol(),
		Verb:       f.GetVerb(),
		Sub:        f.GetSub(),
		Resource:   f.GetResource(),
		Aux:        f.GetAux(),
		DstName:    f.GetDstName(),
		Verdict:    verdictName(f.GetVerdict()),
		Mode:       ModeName(f.GetMode()),
		Rule:       f.GetRule(),
		Reason:     f.GetReason(),
		Count:      f.GetCount(),
		Bytes:      f.GetBytes(),
		FirstSeen:  now,
		LastSeen:   now,
		Node:       node,
	}
	if more := f.GetMoreResources(); len(more) > 0 {
		rec.MoreResources = slices.Clone(more)
	}
	if ts := f.GetFirstSeen(); ts != nil && ts.IsValid() {
		rec.FirstSeen = ts.AsTime()
	}
	if ts := f.GetLastSeen(); ts != nil && ts.IsValid() {
		rec.LastSeen = ts.AsTime()
	}
	if rec.LastSeen.Before(rec.FirstSeen) {
		rec.LastSeen = rec.FirstSeen
	}
	return rec
}

func directionName(d bulkheadv1.Direction) string {
	switch d {
	case bulkheadv1.Direction_DIRECTION_INGRESS:
		return "ingress"
	case bulkheadv1.Direction_DIRECTION_EGRESS:
		return "egress"
	}
	return "unspecified"
}

func verdictName(v bulkheadv1.Verdict) string {
	switch v {
	case bulkheadv1.Verdict_VERDICT_ALLOW:
		return "allow"
	case bulkheadv1.Verdict_VERDICT_VIOLATION:
		return "violation"
	case bulkheadv1.Verdict_VERDICT_DENY:
		return "deny"
	}
	return "unspecified"
}

// ModeName is the CRD word for a wire mode ("discover", "monitor",
// "protect"), "unspecified" for anything else.
func ModeName(m bulkheadv1.Mode) string {
	switch m {
	case bulkheadv1.Mode_MODE_DISCOVER:
		return "discover"
	case bulkheadv1.Mode_MODE_MONITOR:
		return "monitor"
	case bulkheadv1.Mode_MODE_PROTECT:
		return "protect"
	}
	return "unspecified"
}
