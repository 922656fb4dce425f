package svcmap

import (
	"bytes"
	"encoding/xml"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/flows"
)

func scenario() ([]Segment, []flows.Record) {
	segs := []Segment{
		{Namespace: "shop", Name: "web", Mode: "monitor"},
		{Namespace: "shop", Name: "cart", Mode: "protect"},
		{Namespace: "data", Name: "redis", Mode: "protect"},
		{Namespace: "ops", Name: "idle"},
	}
	recs := []flows.Record{
		{SrcSegment: "shop/web", DstSegment: "shop/cart", Protocol: "http", Verb: "GET", Verdict: "allow", Count: 5},
		{SrcSegment: "shop/web", DstSegment: "shop/cart", Protocol: "http", Verb: "POST", Verdict: "allow", Count: 9},
		{SrcSegment: "shop/web", DstSegment: "shop/cart", Protocol: "http", Verb: "PUT", Verdict: "allow", Count: 1},
		{SrcSegment: "shop/web", DstSegment: "shop/cart", Protocol: "http", Verb: "HEAD", Verdict: "allow", Count: 1},
		{SrcSegment: "shop/cart", DstSegment: "data/redis", Protocol: "redis", Verb: "GET", Verdict: "allow", Count: 3},
		{SrcSegment: "shop/cart", DstSegment: "data/redis", Protocol: "redis", Verb: "FLUSHALL", Verdict: "violation", Count: 1},
		{SrcSegment: "shop/web", DstSegment: "data/redis", Protocol: "redis", Verb: "KEYS", Verdict: "deny", Count: 2},
		{SrcSegment: "", DstSegment: "shop/web", Protocol: "http", Verb: "GET", Verdict: "allow", Count: 7},
	}
	return segs, recs
}

type edgeKey struct{ from, to, verdict, proto string }

func keys(m *Map) ([]string, []edgeKey) {
	var ns []string
	for _, n := range m.Nodes {
		ns = append(ns, n.Key)
	}
	var es []edgeKey
	for _, e := range m.Edges {
		es = append(es, edgeKey{e.From, e.To, e.Verdict, e.Protocol})
	}
	return ns, es
}

func TestBuild(t *testing.T) {
	segs, recs := scenario()
	m := Build(segs, recs, Filter{})
	nodes, edges := keys(m)
	wantNodes := []string{Outside, "data/redis", "ops/idle", "shop/cart", "shop/web"}
	if !slices.Equal(nodes, wantNodes) {
		t.Errorf("nodes = %v, want %v", nodes, wantNodes)
	}
	wantEdges := []edgeKey{
		{Outside, "shop/web", "allow", "http"},
		{"shop/cart", "data/redis", "allow", "redis"},
		{"shop/cart", "data/redis", "violation", "redis"},
		{"shop/web", "data/redis", "deny", "redis"},
		{"shop/web", "shop/cart", "allow", "http"},
	}
	if !slices.Equal(edges, wantEdges) {
		t.Errorf("edges = %v, want %v", edges, wantEdges)
	}
	last := m.Edges[len(m.Edges)-1]
	if want := []string{"POST", "GET", "HEAD"}; !slices.Equal(last.Verbs, want) || last.Count != 16 {
		t.Errorf("web→cart verbs %v count %d, want %v (top %d by count) and 16", last.Verbs, last.Count, want, MaxVerbs)
	}
	if got := last.Label(); got != "http POST,GET,HEAD" {
		t.Errorf("label = %q", got)
	}
	// Columns by namespace: the two shop segments share an x, data's differs.
	x := map[string]float64{}
	for _, n := range m.Nodes {
		x[n.Key] = n.X
	}
	if x["shop/cart"] != x["shop/web"] || x["shop/cart"] == x["data/redis"] {
		t.Errorf("layout not in namespace columns: %v", x)
	}
}

func TestFilter(t *testing.T) {
	segs, recs := scenario()
	for _, tc := range []struct {
		name      string
		f         Filter
		wantNodes []string
		wantEdges int
	}{
		{"namespace", Filter{Namespace: "data"}, []string{"data/redis", "shop/cart", "shop/web"}, 3},
		{"namespace without flows", Filter{Namespace: "ops"}, []string{"ops/idle"}, 0},
		{"segment", Filter{Segment: "shop/cart"}, []string{"data/redis", "shop/cart", "shop/web"}, 3},
		{"bare segment in namespace", Filter{Namespace: "shop", Segment: "cart"}, []string{"data/redis", "shop/cart", "shop/web"}, 3},
		{"bare segment", Filter{Segment: "redis"}, []string{"data/redis", "shop/cart", "shop/web"}, 3},
		{"unknown", Filter{Segment: "x/y"}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Build(segs, recs, tc.f)
			nodes, edges := keys(m)
			if !slices.Equal(nodes, tc.wantNodes) || len(edges) != tc.wantEdges {
				t.Errorf("nodes %v edges %v, want nodes %v and %d edges", nodes, edges, tc.wantNodes, tc.wantEdges)
			}
		})
	}
}

func render(t *testing.T, m *Map) (svg, page string) {
	t.Helper()
	var a, b bytes.Buffer
	if err := m.SVG(&a); err != nil {
		t.Fatal(err)
	}
	if err := m.HTML(&b, ""); err != nil {
		t.Fatal(err)
	}
	return a.String(), b.String()
}

func TestDeterministic(t *testing.T) {
	segs, recs := scenario()
	svg0, html0 := render(t, Build(segs, recs, Filter{}))
	for range 20 {
		// Shuffled input (reversed, rotated) gives the same bytes.
		s, r := slices.Clone(segs), slices.Clone(recs)
		slices.Reverse(s)
		r = append(r[3:], r[:3]...)
		svg, page := render(t, Build(s, r, Filter{}))
		if svg != svg0 || page != html0 {
			t.Fatal("rendering differs between runs with the same input")
		}
	}
}

// attrs returns the attributes of every element of the SVG that has attr,
// failing when the SVG is not well-formed XML.
func attrs(t *testing.T, doc, attr string) []map[string]string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	var out []map[string]string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("svg is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			m := map[string]string{}
			for _, a := range se.Attr {
				m[a.Name.Local] = a.Value
			}
			if _, ok := m[attr]; ok {
				out = append(out, m)
			}
		}
	}
}

func TestEscaping(t *testing.T) {
	evil := `<script>alert("x")</script>&'`
	segs := []Segment{{Namespace: "ns", Name: evil, Mode: `"><b>`}}
	recs := []flows.Record{{SrcSegment: "ns/" + evil, DstSegment: "ns/b", Protocol: `h"t<tp`, Verb: "</text><script>", Verdict: `de"ny`}}
	svg, page := render(t, Build(segs, recs, Filter{}))
	for _, s := range []string{svg, page} {
		for _, bad := range []string{"<script>alert", "</text><script>", `"><b>`, `h"t<tp`} {
			if strings.Contains(s, bad) {
				t.Errorf("output contains unescaped %q", bad)
			}
		}
	}
	if n := strings.Count(page, "<script>"); n != 1 {
		t.Errorf("page has %d <script> tags, want only its own", n)
	}
	nodes := attrs(t, svg, "data-segment")
	if len(nodes) != 2 || nodes[0]["data-segment"] != "ns/"+evil || nodes[0]["data-mode"] != `"><b>` {
		t.Errorf("nodes after parsing = %v", nodes)
	}
	edges := attrs(t, svg, "data-from")
	if len(edges) != 1 || edges[0]["data-protocol"] != `h"t<tp` || edges[0]["data-verdict"] != `de"ny` || edges[0]["class"] != "edge other" {
		t.Errorf("edges after parsing = %v", edges)
	}
}

func TestSVGAttributes(t *testing.T) {
	segs, recs := scenario()
	svg, page := render(t, Build(segs, recs, Filter{}))
	if n := len(attrs(t, svg, "data-segment")); n != 5 {
		t.Errorf("%d nodes in svg, want 5", n)
	}
	verdicts := map[string]int{}
	for _, e := range attrs(t, svg, "data-from") {
		verdicts[e["data-verdict"]]++
		if !strings.HasPrefix(e["class"], "edge "+e["data-verdict"]) {
			t.Errorf("edge %v has class %q", e, e["class"])
		}
	}
	if verdicts["allow"] != 3 || verdicts["violation"] != 1 || verdicts["deny"] != 1 {
		t.Errorf("verdicts = %v", verdicts)
	}
	for _, bad := range []string{"http://", "https://", "src=", "href="} {
		if strings.Contains(strings.ReplaceAll(page, "http://www.w3.org/2000/svg", ""), bad) {
			t.Errorf("page refers to something outside (%q)", bad)
		}
	}
}

func TestEmpty(t *testing.T) {
	svg, page := render(t, Build(nil, nil, Filter{}))
	if !strings.Contains(svg, "No segments or flows match.") || !strings.Contains(page, `data-segments="0"`) {
		t.Error("empty map does not say so")
	}
	attrs(t, svg, "x")
}
