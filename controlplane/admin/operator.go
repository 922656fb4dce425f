package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/explain"
	"github.com/bulkhead-io/bulkhead/controlplane/history"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

// History is the flow history the operator endpoints read;
// *history.History is one.
type History interface {
	Query(ctx context.Context, f history.Filter) ([]history.Record, error)
	Aggregate(ctx context.Context, f history.Filter) ([]history.Record, error)
	Get(ctx context.Context, id string) (history.Record, error)
}

// PolicySource is the live policy; *store.Store is one.
type PolicySource interface {
	List() []*v1alpha1.SegmentPolicy
	Settings() store.Settings
}

// OperatorDeps are what the operator endpoints need. All but Resolve and
// Log are required.
type OperatorDeps struct {
	Store   PolicySource
	History History
	// Resolve maps an address to its segment (the latest compilation's
	// identities). Nil: flows must name their segments.
	Resolve explain.Resolver
	Log     *slog.Logger
}

// MaxExplainBody bounds the body of POST /v1/explain.
const MaxExplainBody = 64 << 10

// ExplainRequest is the body of POST /v1/explain: a flow, or the id of a
// recorded flow (GET /v1/history).
type ExplainRequest struct {
	Flow *explain.Flow `json:"flow,omitempty"`
	ID   string        `json:"id,omitempty"`
}

// ExplainResult is the answer of POST /v1/explain; Record is the recorded
// flow when the request named an id.
type ExplainResult struct {
	explain.Explanation
	Record *history.Record `json:"record,omitempty"`
}

type operator struct {
	OperatorDeps
}

// WithOperator serves the operator endpoints next to next (the API of
// NewHandler), which gets every other request:
//
//	GET  /v1/history[?segment=&since=DURATION&violations=true&aggregate=true&limit=N]
//	POST /v1/explain   ExplainRequest (JSON)             → ExplainResult
//	POST /v1/replay[?since=DURATION]  draft policy YAML  → explain.ReplayReport
//	POST /v1/drift[?since=DURATION]   policy folder YAML → explain.DriftReport
//
// since bounds the history looked at (default: all of it).
func WithOperator(next http.Handler, d OperatorDeps) http.Handler {
	if d.Store == nil || d.History == nil {
		panic("admin: Store and History are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	o := &operator{d}
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("GET /v1/history", o.history)
	mux.HandleFunc("POST /v1/explain", o.explain)
	mux.HandleFunc("POST /v1/replay", o.replay)
	mux.HandleFunc("POST /v1/drift", o.drift)
	return mux
}

func (o *operator) filter(r *http.Request) (history.Filter, error) {
	q := r.URL.Query()
	f := history.Filter{Segment: q.Get("segment"), Violations: q.Get("violations") == "true"}
	if s := q.Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return f, fmt.Errorf("since %q: want a positive duration (168h)", s)
		}
		f.Since = time.Now().Add(-d)
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > MaxLimit {
			return f, fmt.Errorf("limit %q: want 0 to %d", s, MaxLimit)
		}
		f.Limit = n
	}
	return f, nil
}

func (o *operator) history(w http.ResponseWriter, r *http.Request) {
	f, err := o.filter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var recs []history.Record
	if r.URL.Query().Get("aggregate") == "true" {
		recs, err = o.History.Aggregate(r.Context(), f)
	} else {
		recs, err = o.History.Query(r.Context(), f)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if recs == nil {
		recs = []history.Record{}
	}
	writeJSON(w, http.StatusOK, recs)
}

func (o *operator) explain(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, MaxExplainBody)
	if !ok {
		return
	}
	var req ExplainRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "explain: "+err.Error())
		return
	}
	var res ExplainResult
	var flow explain.Flow
	switch {
	case req.ID != "" && req.Flow != nil:
		writeError(w, http.StatusBadRequest, "explain: give a flow or an id, not both")
		return
	case req.ID != "":
		rec, err := o.History.Get(r.Context(), req.ID)
		if errors.Is(err, history.ErrNotFound) {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		res.Record = &rec
		flow = explain.FlowOf(&rec)
	case req.Flow != nil:
		flow = *req.Flow
		if flow.Port == 0 || flow.Port > 65535 {
			writeError(w, http.StatusBadRequest, "explain: flow needs a port (1-65535)")
			return
		}
	default:
		writeError(w, http.StatusBadRequest, "explain: give a flow or an id")
		return
	}
	ev, err := explain.New(o.Store.List(), o.Store.Settings(), o.Resolve)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	res.Explanation = ev.Explain(flow)
	writeJSON(w, http.StatusOK, res)
}

// policiesAndFlows reads a YAML body of policies and the aggregated history.
func (o *operator) policiesAndFlows(w http.ResponseWriter, r *http.Request) ([]*v1alpha1.SegmentPolicy, []history.Record, bool) {
	f, err := o.filter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, nil, false
	}
	body, ok := readBody(w, r, v1alpha1.MaxPolicyFile)
	if !ok {
		return nil, nil, false
	}
	ps, err := v1alpha1.UnmarshalYAML(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, nil, false
	}
	var problems []string
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			problems = append(problems, fmt.Sprintf("%s/%s: %v", p.Namespace, p.Name, err))
		}
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid policy", problems...)
		return nil, nil, false
	}
	f.Limit = 0
	recs, err := o.History.Aggregate(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return nil, nil, false
	}
	return ps, recs, true
}

func (o *operator) replay(w http.ResponseWriter, r *http.Request) {
	draft, recs, ok := o.policiesAndFlows(w, r)
	if !ok {
		return
	}
	rep, err := explain.Replay(draft, o.Store.List(), o.Store.Settings(), recs, o.Resolve)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (o *operator) drift(w http.ResponseWriter, r *http.Request) {
	git, recs, ok := o.policiesAndFlows(w, r)
	if !ok {
		return
	}
	rep, err := explain.Drift(git, o.Store.List(), o.Store.Settings(), recs, o.Resolve)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
