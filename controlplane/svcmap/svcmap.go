// Package svcmap draws the map of segments and the flows between them
// (`bulkhead map`, GET /v1/map): one node per segment, one edge per
// (source, destination, verdict, protocol), coloured by verdict and labelled
// with the protocol and the most frequent L7 verbs. It renders SVG and one
// self-contained HTML page (inline SVG, CSS and JS; nothing fetched).
//
// The layout is deterministic: one column per namespace (sorted), the
// segments of a namespace sorted top to bottom; the same input gives the same
// bytes. Every node is a <g data-segment="ns/name"> and every edge a
// <g data-from data-to data-verdict data-protocol> so tools and tests can
// find them.
package svcmap

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/flows"
)

// Outside is the node of flows whose source or destination is not a known
// workload (the record's segment is empty).
const Outside = "(outside)"

// MaxVerbs is how many verbs an edge's label names, most frequent first.
const MaxVerbs = 3

// Segment is one segment to draw, also when no flow touches it.
type Segment struct {
	Namespace string
	Name      string
	Mode      string // "discover", "monitor", "protect" or empty
}

// Filter selects what the map shows. Empty fields select everything.
type Filter struct {
	// Namespace keeps the segments of this namespace and the edges that
	// touch them (with their other ends).
	Namespace string
	// Segment keeps this segment ("ns/name", or a bare name within
	// Namespace) and the edges that touch it (with their other ends).
	Segment string
}

// Node is a segment as placed on the map.
type Node struct {
	Key       string // "ns/name", or Outside
	Namespace string
	Name      string
	Mode      string
	X, Y      float64 // centre
}

// Edge is the traffic of one verdict and protocol from one segment to another.
type Edge struct {
	From, To string // node keys
	Verdict  string // "allow", "violation", "deny"
	Protocol string
	Verbs    []string // at most MaxVerbs, most frequent first
	Count    uint64
}

// Map is a laid-out map.
type Map struct {
	Nodes         []Node // sorted by namespace, then name
	Edges         []Edge // sorted by from, to, verdict, protocol
	Width, Height float64
}

const (
	nodeW   = 170.0
	nodeH   = 44.0
	colGap  = 300.0
	rowGap  = 110.0
	margin  = 60.0
	headerH = 40.0
)

// Build lays out the segments and records that f selects.
func Build(segs []Segment, recs []flows.Record, f Filter) *Map {
	want := f.Segment
	if want != "" && !strings.Contains(want, "/") && f.Namespace != "" {
		want = f.Namespace + "/" + want
	}
	nodes := map[string]*Node{}
	addNode := func(key, mode string) {
		if n, ok := nodes[key]; ok {
			if n.Mode == "" {
				n.Mode = mode
			}
			return
		}
		ns, name, ok := strings.Cut(key, "/")
		if !ok {
			ns, name = "", key
		}
		nodes[key] = &Node{Key: key, Namespace: ns, Name: name, Mode: mode}
	}
	keep := func(key string) bool {
		if want != "" {
			if strings.Contains(want, "/") {
				return key == want
			}
			_, name, _ := strings.Cut(key, "/")
			return name == want
		}
		if f.Namespace != "" {
			ns, _, _ := strings.Cut(key, "/")
			return ns == f.Namespace && strings.Contains(key, "/")
		}
		return true
	}
	for _, s := range segs {
		k := s.Namespace + "/" + s.Name
		if keep(k) {
			addNode(k, s.Mode)
		}
	}
	type ekey struct{ from, to, verdict, proto string }
	type eacc struct {
		count uint64
		verbs map[string]uint64
	}
	edges := map[ekey]*eacc{}
	for i := range recs {
		r := &recs[i]
		from, to := cmp.Or(r.SrcSegment, Outside), cmp.Or(r.DstSegment, Outside)
		if !keep(from) && !keep(to) {
			continue
		}
		addNode(from, "")
		addNode(to, "")
		k := ekey{from, to, cmp.Or(r.Verdict, "allow"), cmp.Or(r.Protocol, "tcp")}
		e := edges[k]
		if e == nil {
			e = &eacc{verbs: map[string]uint64{}}
			edges[k] = e
		}
		c := max(r.Count, 1)
		e.count += c
		if r.Verb != "" {
			e.verbs[r.Verb] += c
		}
	}

	m := &Map{}
	for _, n := range nodes {
		m.Nodes = append(m.Nodes, *n)
	}
	slices.SortFunc(m.Nodes, func(a, b Node) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for k, e := range edges {
		verbs := make([]string, 0, len(e.verbs))
		for v := range e.verbs {
			verbs = append(verbs, v)
		}
		slices.SortFunc(verbs, func(a, b string) int {
			return cmp.Or(cmp.Compare(e.verbs[b], e.verbs[a]), cmp.Compare(a, b))
		})
		if len(verbs) > MaxVerbs {
			verbs = verbs[:MaxVerbs]
		}
		m.Edges = append(m.Edges, Edge{From: k.from, To: k.to, Verdict: k.verdict, Protocol: k.proto, Verbs: verbs, Count: e.count})
	}
	slices.SortFunc(m.Edges, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To),
			cmp.Compare(a.Verdict, b.Verdict), cmp.Compare(a.Protocol, b.Protocol))
	})
	m.layout()
	return m
}

// layout places one column per namespace.
func (m *Map) layout() {
	col, row, rows := -1, 0, 0
	prev := "\x00"
	for i := range m.Nodes {
		n := &m.Nodes[i]
		if n.Namespace != prev {
			prev, col, row = n.Namespace, col+1, 0
		}
		n.X = margin + nodeW/2 + float64(col)*colGap
		n.Y = margin + headerH + nodeH/2 + float64(row)*rowGap
		row++
		rows = max(rows, row)
	}
	m.Width = 2*margin + nodeW + float64(max(col, 0))*colGap
	m.Height = 2*margin + headerH + nodeH + float64(max(rows-1, 0))*rowGap
}

// Label is the edge's text: protocol and its main verbs.
func (e Edge) Label() string {
	if len(e.Verbs) == 0 {
		return e.Protocol
	}
	return e.Protocol + " " + strings.Join(e.Verbs, ",")
}

// path returns the SVG path of edge i and where its label goes. Edges
// between the same two nodes bend apart; a self edge is a loop.
func (m *Map) path(i int, pos map[string]*Node) (d string, lx, ly float64) {
	e := m.Edges[i]
	a, b := pos[e.From], pos[e.To]
	// Index among the edges of the same unordered pair, for the bend.
	k := 0
	for j := range i {
		o := m.Edges[j]
		if (o.From == e.From && o.To == e.To) || (o.From == e.To && o.To == e.From) {
			k++
		}
	}
	if a == b {
		x, y := a.X+nodeW/2, a.Y
		r := 28.0 + 14*float64(k)
		d = fmt.Sprintf("M%.1f %.1f C%.1f %.1f %.1f %.1f %.1f %.1f", x, y-8, x+r*2, y-r*2, x+r*2, y+r*2, x, y+8)
		return d, x + r*1.5, y
	}
	dx, dy := b.X-a.X, b.Y-a.Y
	l := math.Hypot(dx, dy)
	ux, uy := dx/l, dy/l
	// Perpendicular bend: alternate sides; the direction of the pair fixes the sign.
	bend := 30.0 * float64(k/2+1)
	if k%2 == 1 {
		bend = -bend
	}
	if e.From > e.To {
		bend = -bend
	}
	// Straight same-column edges bend more so they do not cross the nodes between.
	if math.Abs(dx) < 1 && l > rowGap*1.5 {
		bend *= 3
	}
	sx, sy := clip(a, ux, uy)
	tx, ty := clip(b, -ux, -uy)
	cx, cy := (sx+tx)/2-uy*bend, (sy+ty)/2+ux*bend
	d = fmt.Sprintf("M%.1f %.1f Q%.1f %.1f %.1f %.1f", sx, sy, cx, cy, tx, ty)
	// The quadratic's midpoint.
	return d, (sx + 2*cx + tx) / 4, (sy + 2*cy + ty) / 4
}

// clip returns where the ray from n's centre along (ux, uy) leaves its box.
func clip(n *Node, ux, uy float64) (float64, float64) {
	t := math.Inf(1)
	if ux != 0 {
		t = (nodeW / 2) / math.Abs(ux)
	}
	if uy != 0 {
		t = min(t, (nodeH/2)/math.Abs(uy))
	}
	return n.X + ux*(t+2), n.Y + uy*(t+2)
}
