package svcmap

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"strconv"
	"strings"
)

// verdictClass maps a verdict to its CSS class; unknown verdicts are "other".
func verdictClass(v string) string {
	switch v {
	case "allow", "violation", "deny":
		return v
	}
	return "other"
}

var esc = html.EscapeString

const svgStyle = `.node rect{fill:#f5f7fa;stroke:#37474f;stroke-width:1.5}
.node text{font:13px sans-serif;fill:#263238;text-anchor:middle}
.node .mode{font-size:10px;fill:#607d8b}
.ns{font:bold 14px sans-serif;fill:#455a64;text-anchor:middle}
.edge path{fill:none;stroke-width:2}
.edge text{font:11px sans-serif;text-anchor:middle;paint-order:stroke;stroke:#fff;stroke-width:3px}
.edge.allow path{stroke:#2e7d32}.edge.allow text{fill:#2e7d32}
.edge.violation path{stroke:#ef6c00;stroke-dasharray:6 3}.edge.violation text{fill:#ef6c00}
.edge.deny path{stroke:#c62828;stroke-dasharray:2 3}.edge.deny text{fill:#c62828}
.edge.other path{stroke:#78909c}.edge.other text{fill:#78909c}
`

// SVG writes the map as a standalone SVG document.
func (m *Map) SVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	m.svg(bw, true)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("svcmap: write svg: %w", err)
	}
	return nil
}

func (m *Map) svg(w *bufio.Writer, standalone bool) {
	width, height := m.Width, m.Height
	if len(m.Nodes) == 0 {
		width, height = 400, 120
	}
	if standalone {
		w.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" id="bulkhead-map" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f">`+"\n", width, height, width, height)
	w.WriteString("<title>Bulkhead segment map</title>\n<style>\n" + svgStyle + "</style>\n<defs>\n")
	for _, c := range []struct{ class, colour string }{{"allow", "#2e7d32"}, {"violation", "#ef6c00"}, {"deny", "#c62828"}, {"other", "#78909c"}} {
		fmt.Fprintf(w, `<marker id="arrow-%s" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="%s"/></marker>`+"\n", c.class, c.colour)
	}
	w.WriteString("</defs>\n")
	if len(m.Nodes) == 0 {
		w.WriteString(`<text x="200" y="60" text-anchor="middle" font-family="sans-serif">No segments or flows match.</text>` + "\n")
	}
	// Namespace headers.
	for i, n := range m.Nodes {
		if i == 0 || m.Nodes[i-1].Namespace != n.Namespace {
			ns := n.Namespace
			if ns == "" {
				ns = "(no namespace)"
			}
			fmt.Fprintf(w, `<text class="ns" data-namespace="%s" x="%.1f" y="%.1f">%s</text>`+"\n", esc(n.Namespace), n.X, margin, esc(ns))
		}
	}
	pos := make(map[string]*Node, len(m.Nodes))
	for i := range m.Nodes {
		pos[m.Nodes[i].Key] = &m.Nodes[i]
	}
	// Edges under the nodes.
	for i, e := range m.Edges {
		d, lx, ly := m.path(i, pos)
		c := verdictClass(e.Verdict)
		fmt.Fprintf(w, `<g class="edge %s" data-from="%s" data-to="%s" data-verdict="%s" data-protocol="%s" data-verbs="%s" data-count="%d">`,
			c, esc(e.From), esc(e.To), esc(e.Verdict), esc(e.Protocol), esc(joinVerbs(e.Verbs)), e.Count)
		fmt.Fprintf(w, `<title>%s → %s: %s %s, %d</title>`, esc(e.From), esc(e.To), esc(e.Verdict), esc(e.Label()), e.Count)
		fmt.Fprintf(w, `<path d="%s" marker-end="url(#arrow-%s)"/>`, d, c)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f">%s</text></g>`+"\n", lx, ly-4, esc(e.Label()))
	}
	for _, n := range m.Nodes {
		fmt.Fprintf(w, `<g class="node" data-segment="%s" data-namespace="%s" data-mode="%s">`, esc(n.Key), esc(n.Namespace), esc(n.Mode))
		fmt.Fprintf(w, `<title>%s</title>`, esc(n.Key))
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.0f" height="%.0f" rx="6"/>`, n.X-nodeW/2, n.Y-nodeH/2, nodeW, nodeH)
		if n.Mode != "" {
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f">%s</text><text class="mode" x="%.1f" y="%.1f">%s</text></g>`+"\n", n.X, n.Y-2, esc(n.Name), n.X, n.Y+13, esc(n.Mode))
		} else {
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f">%s</text></g>`+"\n", n.X, n.Y+5, esc(n.Name))
		}
	}
	w.WriteString("</svg>\n")
}

func joinVerbs(v []string) string { return strings.Join(v, ",") }

const pageStyle = `body{font-family:sans-serif;margin:1.5em;color:#263238}
#controls{margin-bottom:1em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}
#summary{color:#455a64}
.legend span{margin-right:1em}.legend .allow{color:#2e7d32}.legend .violation{color:#ef6c00}.legend .deny{color:#c62828}
.hidden{display:none}
`

// The page's script filters by namespace, segment and verdict, and writes a
// summary of what is shown (counts as data- attributes too).
const pageScript = `(function(){
var svg=document.getElementById("bulkhead-map");
var nsSel=document.getElementById("f-namespace"),segIn=document.getElementById("f-segment");
var nodes=Array.prototype.slice.call(svg.querySelectorAll("g[data-segment]"));
var edges=Array.prototype.slice.call(svg.querySelectorAll("g[data-from]"));
var seen={};
nodes.forEach(function(n){var ns=n.getAttribute("data-namespace");if(!seen[ns]){seen[ns]=1;var o=document.createElement("option");o.value=ns;o.textContent=ns||"(none)";nsSel.appendChild(o);}});
function apply(){
var ns=nsSel.value,seg=segIn.value.trim(),show={},verd={};
document.querySelectorAll("input[data-verdict-filter]").forEach(function(c){verd[c.getAttribute("data-verdict-filter")]=c.checked;});
function match(k){if(seg){return k===seg||k.split("/").pop()===seg;}if(ns){return k.indexOf(ns+"/")===0;}return true;}
var counts={allow:0,violation:0,deny:0},ne=0;
edges.forEach(function(e){var f=e.getAttribute("data-from"),t=e.getAttribute("data-to"),v=e.getAttribute("data-verdict");
var on=(match(f)||match(t))&&verd[v]!==false;e.classList.toggle("hidden",!on);
if(on){show[f]=1;show[t]=1;ne++;if(v in counts){counts[v]++;}}});
var nn=0;
nodes.forEach(function(n){var k=n.getAttribute("data-segment");var on=match(k)||show[k]===1;n.classList.toggle("hidden",!on);if(on){nn++;}});
var s=document.getElementById("summary");
s.setAttribute("data-segments",nn);s.setAttribute("data-edges",ne);
s.setAttribute("data-allow",counts.allow);s.setAttribute("data-violation",counts.violation);s.setAttribute("data-deny",counts.deny);
s.textContent=nn+" segments, "+ne+" edges: "+counts.allow+" allowed, "+counts.violation+" violations, "+counts.deny+" denied";
}
nsSel.addEventListener("change",apply);segIn.addEventListener("input",apply);
document.querySelectorAll("input[data-verdict-filter]").forEach(function(c){c.addEventListener("change",apply);});
apply();
})();
`

// HTML writes the map as one self-contained page: the SVG inline, with
// inline CSS and a script to filter by namespace, segment and verdict. It
// loads nothing from the network.
func (m *Map) HTML(w io.Writer, title string) error {
	if title == "" {
		title = "Bulkhead segment map"
	}
	bw := bufio.NewWriter(w)
	bw.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	bw.WriteString(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">` + "\n")
	fmt.Fprintf(bw, "<title>%s</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>%s</h1>\n", esc(title), pageStyle, esc(title))
	bw.WriteString(`<div id="controls"><label>Namespace <select id="f-namespace"><option value="">all</option></select></label>` +
		`<label>Segment <input id="f-segment" type="search" placeholder="ns/name or name"></label>` +
		`<span class="legend"><label class="allow"><input type="checkbox" data-verdict-filter="allow" checked> allowed</label> ` +
		`<label class="violation"><input type="checkbox" data-verdict-filter="violation" checked> violation</label> ` +
		`<label class="deny"><input type="checkbox" data-verdict-filter="deny" checked> denied</label></span></div>` + "\n")
	fmt.Fprintf(bw, `<p id="summary" data-segments="%d" data-edges="%d">%s segments, %s edges</p>`+"\n",
		len(m.Nodes), len(m.Edges), strconv.Itoa(len(m.Nodes)), strconv.Itoa(len(m.Edges)))
	m.svg(bw, false)
	bw.WriteString("<script>\n" + pageScript + "</script>\n</body>\n</html>\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("svcmap: write html: %w", err)
	}
	return nil
}
