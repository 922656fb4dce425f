package admin

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/bulkhead-io/bulkhead/controlplane/promote"
)

// Promotions is the automatic promotion the promotion endpoints serve;
// *promote.Promoter is one.
type Promotions interface {
	Records() []promote.Record
	Veto(ns, name, by string) error
	VetoIfEnabled(ns, name, by string) (bool, error)
}

var _ Promotions = (*promote.Promoter)(nil)

// VetoResult is the answer of POST /v1/segments/{ns}/{name}/promotion/veto.
type VetoResult struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Vetoed    bool   `json:"vetoed"`
}

type promotions struct {
	next http.Handler
	p    Promotions
	log  *slog.Logger
}

// WithPromotions serves the promotion endpoints next to next (the API of
// NewHandler), which gets every other request:
//
//	GET  /v1/promotions                               → []promote.Record, newest first
//	POST /v1/segments/{ns}/{name}/promotion/veto      → VetoResult (404: no policy)
//
// and, after next set a segment's mode (PUT /v1/segments/{ns}/{name}/mode
// answered 2xx), vetoes the segment's promotion when it is enabled: a
// person took over.
func WithPromotions(next http.Handler, p Promotions, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &promotions{next: next, p: p, log: log}
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("GET /v1/promotions", h.list)
	mux.HandleFunc("POST /v1/segments/{ns}/{name}/promotion/veto", h.veto)
	mux.HandleFunc("PUT /v1/segments/{ns}/{name}/mode", h.setMode)
	return mux
}

func (h *promotions) list(w http.ResponseWriter, _ *http.Request) {
	recs := h.p.Records()
	if recs == nil {
		recs = []promote.Record{}
	}
	writeJSON(w, http.StatusOK, recs)
}

func (h *promotions) veto(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if !checkNames(w, [2]string{"namespace", ns}, [2]string{"segment", name}) {
		return
	}
	err := h.p.Veto(ns, name, "the admin API")
	switch {
	case errors.Is(err, promote.ErrNoPolicy):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, VetoResult{Namespace: ns, Name: name, Vetoed: true})
}

func (h *promotions) setMode(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	h.next.ServeHTTP(sw, r)
	if sw.code < 200 || sw.code > 299 {
		return
	}
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if _, err := h.p.VetoIfEnabled(ns, name, "a mode set through the admin API"); err != nil {
		h.log.Warn("promotion: cannot veto after a mode set", "segment", ns+"/"+name, "err", err)
	}
}

// statusWriter remembers the status written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
