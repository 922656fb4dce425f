package svcmap

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/admin"
	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
)

// edge is what the map shows of one edge.
type edge struct{ from, to, verdict, protocol string }

// scenario: three segments; web→cart allowed (HTTP), cart→redis a
// violation (monitor mode), web→redis denied (protect mode).
func scenario(t *testing.T) string {
	t.Helper()
	rec := flows.NewRecorder(flows.Options{})
	rec.Record("node-1", []*bulkheadv1.Flow{
		{Direction: bulkheadv1.Direction_DIRECTION_INGRESS, SrcIp: "198.18.0.2", SrcSegment: "shop/web", DstIp: "198.18.0.3", DstSegment: "shop/cart", DstPort: 8080,
			Protocol: "http", Verb: "GET", Resource: "/cart", Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_PROTECT, Rule: "shop/cart#0", Count: 4},
		{Direction: bulkheadv1.Direction_DIRECTION_INGRESS, SrcIp: "198.18.0.2", SrcSegment: "shop/web", DstIp: "198.18.0.3", DstSegment: "shop/cart", DstPort: 8080,
			Protocol: "http", Verb: "POST", Resource: "/cart/items", Verdict: bulkheadv1.Verdict_VERDICT_ALLOW, Mode: bulkheadv1.Mode_MODE_PROTECT, Rule: "shop/cart#0", Count: 2},
		{Direction: bulkheadv1.Direction_DIRECTION_INGRESS, SrcIp: "198.18.0.3", SrcSegment: "shop/cart", DstIp: "198.18.0.4", DstSegment: "data/redis", DstPort: 6379,
			Protocol: "redis", Verb: "FLUSHALL", Verdict: bulkheadv1.Verdict_VERDICT_VIOLATION, Mode: bulkheadv1.Mode_MODE_MONITOR, Reason: "l7_not_allowed", Count: 1},
		{Direction: bulkheadv1.Direction_DIRECTION_INGRESS, SrcIp: "198.18.0.2", SrcSegment: "shop/web", DstIp: "198.18.0.4", DstSegment: "data/redis", DstPort: 6379,
			Protocol: "redis", Verb: "KEYS", Verdict: bulkheadv1.Verdict_VERDICT_DENY, Mode: bulkheadv1.Mode_MODE_PROTECT, Reason: "no_rule", Count: 3},
	})
	segs := func() []compile.SegmentInfo {
		return []compile.SegmentInfo{
			{Namespace: "data", Name: "redis", Mode: v1alpha1.Mode("monitor")},
			{Namespace: "shop", Name: "cart", Mode: v1alpha1.Mode("protect")},
			{Namespace: "shop", Name: "web", Mode: v1alpha1.Mode("protect")},
		}
	}
	srv := httptest.NewServer(admin.WithMap(http.NotFoundHandler(), admin.MapDeps{Flows: rec, Segments: segs}))
	t.Cleanup(srv.Close)
	return srv.URL
}

var (
	wantSegments = []string{"data/redis", "shop/cart", "shop/web"}
	wantEdges    = []edge{
		{"shop/cart", "data/redis", "violation", "redis"},
		{"shop/web", "data/redis", "deny", "redis"},
		{"shop/web", "shop/cart", "allow", "http"},
	}
)

// bulkhead runs the CLI and returns its exit status.
func bulkhead(t *testing.T, server string, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Execute(t.Context(), append([]string{"--server", server}, args...), cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	if code != 0 {
		t.Logf("bulkhead %v: exit %d: %s", args, code, errOut.String())
	}
	return code, out.String()
}

// dumpDOM renders page in headless Chromium and returns the DOM after its
// scripts ran.
func dumpDOM(t *testing.T, page string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("needs headless chromium (apt-get install chromium): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--user-data-dir="+profile, "--dump-dom", "file://"+page)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

// collect walks a parsed document and returns the segments, the edges and
// the attributes of the summary element.
func collect(n *html.Node) (segs []string, edges []edge, summary map[string]string) {
	summary = map[string]string{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			a := map[string]string{}
			for _, at := range n.Attr {
				a[at.Key] = at.Val
			}
			if s, ok := a["data-segment"]; ok {
				segs = append(segs, s)
			}
			if f, ok := a["data-from"]; ok {
				edges = append(edges, edge{f, a["data-to"], a["data-verdict"], a["data-protocol"]})
			}
			if a["id"] == "summary" {
				summary = a
				if n.FirstChild != nil {
					summary["text"] = n.FirstChild.Data
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return segs, edges, summary
}

func TestMapInChromium(t *testing.T) {
	server := scenario(t)
	page := filepath.Join(t.TempDir(), "map.html")
	if code, _ := bulkhead(t, server, "map", "-f", page); code != 0 {
		t.Fatalf("bulkhead map -f %s: exit %d", page, code)
	}
	dom := dumpDOM(t, page)
	doc, err := html.Parse(strings.NewReader(dom))
	if err != nil {
		t.Fatalf("parse dumped DOM: %v", err)
	}
	segs, edges, summary := collect(doc)
	if !slices.Equal(segs, wantSegments) {
		t.Errorf("rendered segments = %v, want %v", segs, wantSegments)
	}
	if !slices.Equal(edges, wantEdges) {
		t.Errorf("rendered edges = %v, want %v", edges, wantEdges)
	}
	// The page's script ran: it counted what is shown.
	want := map[string]string{"data-segments": "3", "data-edges": "3", "data-allow": "1", "data-violation": "1", "data-deny": "1"}
	for k, v := range want {
		if summary[k] != v {
			t.Errorf("summary %s = %q, want %q (summary %v)", k, summary[k], v, summary)
		}
	}
	if !strings.Contains(summary["text"], "1 allowed, 1 violations, 1 denied") {
		t.Errorf("summary text = %q", summary["text"])
	}
	for _, label := range []string{"http GET,POST", "redis FLUSHALL", "redis KEYS"} {
		if !strings.Contains(dom, ">"+label+"<") {
			t.Errorf("rendered page lacks the edge label %q", label)
		}
	}
}

func TestMapSVGFiltered(t *testing.T) {
	server := scenario(t)
	code, out := bulkhead(t, server, "map", "--format", "svg", "-n", "shop", "--segment", "cart")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	d := xml.NewDecoder(strings.NewReader(out))
	var segs []string
	var edges []edge
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg is not well-formed: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		a := map[string]string{}
		for _, at := range se.Attr {
			a[at.Name.Local] = at.Value
		}
		if s, ok := a["data-segment"]; ok {
			segs = append(segs, s)
		}
		if f, ok := a["data-from"]; ok {
			edges = append(edges, edge{f, a["data-to"], a["data-verdict"], a["data-protocol"]})
		}
	}
	// shop/cart and its peers; web→redis touches neither end.
	if !slices.Equal(segs, wantSegments) {
		t.Errorf("segments = %v, want %v", segs, wantSegments)
	}
	if want := []edge{wantEdges[0], wantEdges[2]}; !slices.Equal(edges, want) {
		t.Errorf("edges = %v, want %v", edges, want)
	}

	if code, _ := bulkhead(t, server, "map", "--format", "png"); code == 0 {
		t.Error("--format png: exit 0")
	}
	resp, err := http.Get(server + "/v1/map?format=svg&namespace=Bad_NS")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad namespace: status %d, want 400", resp.StatusCode)
	}
}
