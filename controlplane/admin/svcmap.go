package admin

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
	"github.com/bulkhead-io/bulkhead/controlplane/svcmap"
)

// MapDeps are what GET /v1/map draws.
type MapDeps struct {
	// Flows are the recorded flows (required).
	Flows *flows.Recorder
	// Segments returns the compiled segments, nil before the first
	// compilation. Nil: only segments that flows name are drawn.
	Segments func() []compile.SegmentInfo
}

// WithMap serves the segment map next to next, which gets every other
// request:
//
//	GET /v1/map?format=svg|html&namespace=NS&segment=NAME|NS/NAME
//
// format defaults to html (one self-contained page); svg is image/svg+xml.
func WithMap(next http.Handler, d MapDeps) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("GET /v1/map", func(w http.ResponseWriter, r *http.Request) { serveMap(w, r, d) })
	return mux
}

func serveMap(w http.ResponseWriter, r *http.Request, d MapDeps) {
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = "html"
	}
	if format != "html" && format != "svg" {
		writeError(w, http.StatusBadRequest, `format must be "svg" or "html", not "`+format+`"`)
		return
	}
	f := svcmap.Filter{Namespace: q.Get("namespace"), Segment: q.Get("segment")}
	names := [][2]string{}
	if f.Namespace != "" {
		names = append(names, [2]string{"namespace", f.Namespace})
	}
	if f.Segment != "" {
		ns, name, ok := strings.Cut(f.Segment, "/")
		if ok {
			names = append(names, [2]string{"namespace", ns}, [2]string{"segment", name})
		} else {
			names = append(names, [2]string{"segment", f.Segment})
		}
	}
	if !checkNames(w, names...) {
		return
	}
	var segs []svcmap.Segment
	if d.Segments != nil {
		for _, s := range d.Segments() {
			segs = append(segs, svcmap.Segment{Namespace: s.Namespace, Name: s.Name, Mode: string(s.Mode)})
		}
	}
	m := svcmap.Build(segs, d.Flows.Flows(flows.Filter{}), f)
	var buf bytes.Buffer
	var err error
	if format == "svg" {
		w.Header().Set("Content-Type", "image/svg+xml; charset=utf-8")
		err = m.SVG(&buf)
	} else {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		err = m.HTML(&buf, "")
	}
	if err != nil {
		w.Header().Del("Content-Type")
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(buf.Bytes())
}
