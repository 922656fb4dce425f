// Package admin is the control plane's HTTP API for the CLI and operators:
// policies (list, export, apply), segments and their modes, namespace default
// modes, the infrastructure allowances, recent flows and violations, the xDS
// nodes, health and metrics.
//
// Every answer is JSON but the export (YAML) and /metrics (Prometheus text).
// Errors are {"error": "..."} with the status code that fits: 400 for a bad
// request (with "problems" listing every validation problem), 404, 405, 413
// for a body over its bound, 500 when the store fails.
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
)

// Store is what the API reads and changes; *store.Store is one.
type Store interface {
	List() []*v1alpha1.SegmentPolicy
	Export(namespace string) ([]byte, error)
	Apply(ps []*v1alpha1.SegmentPolicy) (changed []string, err error)
	SetMode(ns, name string, m v1alpha1.Mode) error
	SetNamespaceMode(ns string, m v1alpha1.Mode) error
	Settings() store.Settings
	Violations(segmentKey string) int64
}

// Deps are the parts the API serves. Store and Flows are required.
type Deps struct {
	Store Store
	// Segments returns the segments of the latest successful compilation,
	// nil before the first. Nil: segments are listed from the store alone.
	Segments func() []compile.SegmentInfo
	Flows    *flows.Recorder
	// Nodes reports the xDS nodes. Nil: /v1/proxies lists none.
	Nodes func() []xds.NodeStatus
	// Metrics serves /metrics. Nil: 404.
	Metrics http.Handler
	// Health reports whether the control plane is healthy. Nil: always.
	Health func() error
	// Log receives one line per change. Nil: discarded.
	Log *slog.Logger
}

// Bounds on requests.
const (
	// MaxModeBody bounds the body of a mode change.
	MaxModeBody = 4 << 10
	// MaxLimit bounds the limit parameter of flows and violations.
	MaxLimit = 100000
)

type api struct {
	Deps
	mux *http.ServeMux
}

// NewHandler returns the API's handler. It panics only on nil required
// dependencies (a wiring bug).
func NewHandler(d Deps) http.Handler {
	if d.Store == nil || d.Flows == nil {
		panic("admin: Store and Flows are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	a := &api{Deps: d, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /v1/policies", a.listPolicies)
	a.mux.HandleFunc("GET /v1/policies/export", a.exportPolicies)
	a.mux.HandleFunc("POST /v1/policies/apply", a.applyPolicies)
	a.mux.HandleFunc("GET /v1/segments", a.listSegments)
	a.mux.HandleFunc("PUT /v1/segments/{ns}/{name}/mode", a.setSegmentMode)
	a.mux.HandleFunc("PUT /v1/namespaces/{ns}/mode", a.setNamespaceMode)
	a.mux.HandleFunc("GET /v1/flows", a.listFlows)
	a.mux.HandleFunc("GET /v1/violations", a.listViolations)
	a.mux.HandleFunc("GET /v1/proxies", a.listProxies)
	a.mux.HandleFunc("GET /v1/infrastructure", a.getInfrastructure)
	a.mux.HandleFunc("GET /healthz", a.healthz)
	if d.Metrics != nil {
		a.mux.Handle("GET /metrics", d.Metrics)
	}
	return a
}

// ServeHTTP routes r; requests no pattern matches get a JSON 404 or 405.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := a.mux.Handler(r); pattern != "" {
		a.mux.ServeHTTP(w, r)
		return
	}
	c := &codeCapture{header: w.Header()}
	a.mux.ServeHTTP(c, r)
	switch c.code {
	case http.StatusNotFound:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such resource: %s", r.URL.Path))
	case http.StatusMethodNotAllowed:
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, w.Header().Get("Allow")))
	default: // a redirect to the cleaned path
		w.WriteHeader(c.code)
	}
}

// codeCapture records the status the mux's fallback handlers write.
type codeCapture struct {
	header http.Header
	code   int
}

func (c *codeCapture) Header() http.Header { return c.header }
func (c *codeCapture) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
func (c *codeCapture) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return len(b), nil
}

// errorBody is every error answer.
type errorBody struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string, problems ...string) {
	w.Header().Del("Content-Encoding")
	writeJSON(w, code, errorBody{Error: msg, Problems: problems})
}

// readBody reads r's body up to max bytes; over that it answers 413 and
// returns false.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, bool) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", max))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("read request body: %v", err))
		return nil, false
	}
	return data, true
}

func (a *api) listPolicies(w http.ResponseWriter, _ *http.Request) {
	ps := a.Store.List()
	if ps == nil {
		ps = []*v1alpha1.SegmentPolicy{}
	}
	writeJSON(w, http.StatusOK, ps)
}

func (a *api) exportPolicies(w http.ResponseWriter, r *http.Request) {
	ns := r.URL.Query().Get("namespace")
	if ns != "" {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("namespace %q: %s", ns, strings.Join(msgs, "; ")))
			return
		}
	}
	data, err := a.Store.Export(ns)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/yaml")
	w.Write(data)
}

// ApplyResult is the answer to an apply: the policies ("namespace/name")
// that changed and those that were already as given.
type ApplyResult struct {
	Changed   []string `json:"changed"`
	Unchanged []string `json:"unchanged"`
}

func (a *api) applyPolicies(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r, v1alpha1.MaxPolicyFile)
	if !ok {
		return
	}
	ps, err := v1alpha1.UnmarshalYAML(data)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("parse policies: %v", err), store.Problems(err)...)
		return
	}
	if len(ps) == 0 {
		writeError(w, http.StatusBadRequest, "no policies in the request body")
		return
	}
	// The store validates everything first and applies nothing when
	// anything is wrong; ErrInvalid tells bad input from a failing disk.
	changed, err := a.Store.Apply(ps)
	if errors.Is(err, store.ErrInvalid) {
		list := store.Problems(err)
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%d problems: %s", len(list), strings.Join(list, "; ")), list...)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	seen := make(map[string]bool, len(ps))
	for _, p := range ps {
		seen[p.Namespace+"/"+p.Name] = true
	}
	res := ApplyResult{Changed: changed, Unchanged: []string{}}
	if res.Changed == nil {
		res.Changed = []string{}
	}
	for key := range seen {
		if !slices.Contains(changed, key) {
			res.Unchanged = append(res.Unchanged, key)
		}
	}
	slices.Sort(res.Unchanged)
	a.Log.Info("policies applied", "changed", res.Changed, "unchanged", len(res.Unchanged))
	writeJSON(w, http.StatusOK, res)
}

// Segment is one segment as /v1/segments lists it.
type Segment struct {
	Namespace  string        `json:"namespace"`
	Name       string        `json:"name"`
	Mode       v1alpha1.Mode `json:"mode"`
	Workloads  []string      `json:"workloads"`
	Rules      int           `json:"rules"`
	Learned    int           `json:"learned"`
	Violations int64         `json:"violations"`
}

func (a *api) listSegments(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.segments())
}

// segments joins the compiled segments (mode, workloads) with the store's
// policies (rules, learned rules, violations). Before the first compilation
// the store's policies alone are listed.
func (a *api) segments() []Segment {
	byKey := map[string]*Segment{}
	var out []*Segment
	add := func(ns, name string) *Segment {
		key := ns + "/" + name
		if s := byKey[key]; s != nil {
			return s
		}
		s := &Segment{Namespace: ns, Name: name, Workloads: []string{}, Violations: a.Store.Violations(key)}
		byKey[key] = s
		out = append(out, s)
		return s
	}
	var compiled []compile.SegmentInfo
	if a.Segments != nil {
		compiled = a.Segments()
	}
	for _, si := range compiled {
		s := add(si.Namespace, si.Name)
		s.Mode = si.Mode
		s.Workloads = append(s.Workloads, si.Workloads...)
	}
	settings := a.Store.Settings()
	for _, p := range a.Store.List() {
		s := add(p.Namespace, p.Name)
		// The store is the truth; the compiled mode lags it by the
		// compile debounce, so a "mode get" right after "mode set" would
		// show the old mode.
		switch {
		case p.Spec.Mode != "":
			s.Mode = p.Spec.Mode
		case s.Mode == "":
			s.Mode = settings.Mode(p.Namespace)
		}
		s.Rules = len(p.Spec.Ingress) + len(p.Spec.Egress)
		s.Learned = int(p.Status.LearnedRules)
	}
	res := make([]Segment, 0, len(out))
	for _, s := range out {
		res = append(res, *s)
	}
	slices.SortFunc(res, func(x, y Segment) int {
		if c := strings.Compare(x.Namespace, y.Namespace); c != 0 {
			return c
		}
		return strings.Compare(x.Name, y.Name)
	})
	return res
}

// ModeRequest is the body of a mode change.
type ModeRequest struct {
	Mode v1alpha1.Mode `json:"mode"`
}

// ModeResult is the answer to a mode change.
type ModeResult struct {
	Namespace string        `json:"namespace"`
	Name      string        `json:"name,omitempty"`
	Mode      v1alpha1.Mode `json:"mode"`
}

// readMode parses a mode body. An empty mode is allowed: it clears the mode
// so that the defaults apply.
func readMode(w http.ResponseWriter, r *http.Request) (v1alpha1.Mode, bool) {
	data, ok := readBody(w, r, MaxModeBody)
	if !ok {
		return "", false
	}
	var req ModeRequest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`body: want {"mode": "discover|monitor|protect"}: %v`, err))
		return "", false
	}
	switch req.Mode {
	case "", v1alpha1.ModeDiscover, v1alpha1.ModeMonitor, v1alpha1.ModeProtect:
		return req.Mode, true
	}
	writeError(w, http.StatusBadRequest, fmt.Sprintf("mode %q: want discover, monitor or protect", req.Mode))
	return "", false
}

// checkNames answers 400 naming every path value that is not a DNS label.
func checkNames(w http.ResponseWriter, names ...[2]string) bool {
	var list []string
	for _, n := range names {
		if msgs := validation.IsDNS1123Label(n[1]); len(msgs) > 0 {
			list = append(list, fmt.Sprintf("%s %q: %s", n[0], n[1], strings.Join(msgs, "; ")))
		}
	}
	if len(list) > 0 {
		writeError(w, http.StatusBadRequest, strings.Join(list, "; "), list...)
		return false
	}
	return true
}

func (a *api) setSegmentMode(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if !checkNames(w, [2]string{"namespace", ns}, [2]string{"segment", name}) {
		return
	}
	m, ok := readMode(w, r)
	if !ok {
		return
	}
	if err := a.Store.SetMode(ns, name, m); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	a.Log.Info("segment mode set", "segment", ns+"/"+name, "mode", m)
	writeJSON(w, http.StatusOK, ModeResult{Namespace: ns, Name: name, Mode: m})
}

func (a *api) setNamespaceMode(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	if !checkNames(w, [2]string{"namespace", ns}) {
		return
	}
	m, ok := readMode(w, r)
	if !ok {
		return
	}
	if err := a.Store.SetNamespaceMode(ns, m); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	a.Log.Info("namespace mode set", "namespace", ns, "mode", m)
	writeJSON(w, http.StatusOK, ModeResult{Namespace: ns, Mode: m})
}

// filter reads ?segment= and ?limit=.
func filter(w http.ResponseWriter, r *http.Request) (flows.Filter, bool) {
	q := r.URL.Query()
	f := flows.Filter{Segment: q.Get("segment")}
	if len(f.Segment) > 253 {
		writeError(w, http.StatusBadRequest, "segment: longer than 253 bytes")
		return f, false
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > MaxLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want a number from 0 to %d", s, MaxLimit))
			return f, false
		}
		f.Limit = n
	}
	return f, true
}

func (a *api) listFlows(w http.ResponseWriter, r *http.Request) {
	if f, ok := filter(w, r); ok {
		writeJSON(w, http.StatusOK, a.Flows.Flows(f))
	}
}

func (a *api) listViolations(w http.ResponseWriter, r *http.Request) {
	if f, ok := filter(w, r); ok {
		writeJSON(w, http.StatusOK, a.Flows.Violations(f))
	}
}

func (a *api) listProxies(w http.ResponseWriter, _ *http.Request) {
	nodes := []xds.NodeStatus{}
	if a.Nodes != nil {
		nodes = append(nodes, a.Nodes()...)
	}
	writeJSON(w, http.StatusOK, nodes)
}

func (a *api) healthz(w http.ResponseWriter, _ *http.Request) {
	if a.Health != nil {
		if err := a.Health(); err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
