package explain

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/history"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

// MaxExamples bounds the flows listed per group.
const MaxExamples = 100

// cut marks a reported field or list the proxy cut (learn.Cut).
const cut = "..."

// FlowOf is the flow a history record describes. A list of further
// resources ending in "..." (cut by the proxy) becomes Overflow.
func FlowOf(r *history.Record) Flow {
	f := Flow{
		Direction: r.Direction, SrcIP: r.SrcIP, SrcSegment: r.SrcSegment, DstIP: r.DstIP, DstSegment: r.DstSegment,
		Port: r.DstPort, Protocol: r.Protocol, Verb: r.Verb, Sub: r.Sub, Resource: r.Resource, Aux: r.Aux,
		Connection: r.Connection || r.Verb == "" && (r.Protocol == "" || r.Protocol == v1alpha1.ProtocolTCP),
	}
	more := r.MoreResources
	if n := len(more); n > 0 && more[n-1] == cut {
		more, f.Overflow = more[:n-1], true
	}
	f.More = slices.Clone(more)
	return f
}

// Example is one recorded flow of a group.
type Example struct {
	ID    string `json:"id"`
	Flow  Flow   `json:"flow"`
	Count uint64 `json:"count"`
	// Reason is why no rule allows it now; Near the closest rule, if any.
	Reason string `json:"reason"`
	Near   *Near  `json:"near,omitempty"`
}

// Group is the recorded flows of one segment that one recorded rule allowed
// (or that no rule allowed: Rule empty, RecordedReason set) and that the
// evaluated policy does not allow.
type Group struct {
	Segment        string    `json:"segment"`
	Mode           string    `json:"mode"` // the evaluated policy's mode for the segment
	Verdict        string    `json:"verdict"`
	Rule           string    `json:"rule,omitempty"`
	RecordedReason string    `json:"recordedReason,omitempty"`
	Flows          int       `json:"flows"`
	Count          uint64    `json:"count"`
	Examples       []Example `json:"examples"`
}

// ReplayReport is what a draft policy would deny of the recorded flows.
type ReplayReport struct {
	// Policies are the draft's policies ("ns/name").
	Policies []string `json:"policies"`
	// Evaluated counts the recorded flows of the draft's segments;
	// Skipped those of other segments.
	Evaluated int `json:"evaluated"`
	Skipped   int `json:"skipped"`
	// Denied counts the flows (and Count the messages) no rule of the draft
	// allows.
	Denied int      `json:"denied"`
	Count  uint64   `json:"count"`
	Groups []*Group `json:"groups"`
}

// Replay evaluates the recorded flows of the draft's segments against the
// draft laid over the live policies (a draft policy replaces the live one
// of its name; the others stay), without touching either, and reports the
// flows no rule of the draft allows, grouped by segment and the rule that
// allowed them when they were recorded.
func Replay(draft, live []*v1alpha1.SegmentPolicy, settings store.Settings, recs []history.Record, resolve Resolver) (*ReplayReport, error) {
	byKey := map[string]*v1alpha1.SegmentPolicy{}
	for _, p := range live {
		byKey[p.Namespace+"/"+p.Name] = p
	}
	rep := &ReplayReport{Groups: []*Group{}}
	inDraft := map[string]bool{}
	for _, p := range draft {
		k := p.Namespace + "/" + p.Name
		byKey[k] = p
		inDraft[k] = true
		rep.Policies = append(rep.Policies, k)
	}
	slices.Sort(rep.Policies)
	all := make([]*v1alpha1.SegmentPolicy, 0, len(byKey))
	for _, p := range byKey {
		all = append(all, p)
	}
	ev, err := New(all, settings, resolve)
	if err != nil {
		return nil, err
	}
	groups := map[[3]string]*Group{}
	for i := range recs {
		r := &recs[i]
		f := FlowOf(r)
		ex := ev.Explain(f)
		if !inDraft[ex.Segment] {
			rep.Skipped++
			continue
		}
		rep.Evaluated++
		if ex.Allowed() {
			continue
		}
		addToGroup(groups, r, &ex)
		rep.Denied++
		rep.Count += r.Count
	}
	rep.Groups = sortGroups(groups)
	return rep, nil
}

func addToGroup(groups map[[3]string]*Group, r *history.Record, ex *Explanation) {
	recReason := ""
	if r.Rule == "" {
		recReason = cmp.Or(r.Reason, ReasonNoRule)
	}
	k := [3]string{ex.Segment, r.Rule, recReason}
	g := groups[k]
	if g == nil {
		g = &Group{Segment: ex.Segment, Mode: ex.Mode, Verdict: ex.Verdict, Rule: r.Rule, RecordedReason: recReason, Examples: []Example{}}
		groups[k] = g
	}
	g.Flows++
	g.Count += r.Count
	if len(g.Examples) < MaxExamples {
		e := Example{ID: r.ID, Flow: ex.Flow, Count: r.Count, Reason: ex.Reason}
		if len(ex.Near) > 0 {
			n := ex.Near[0]
			e.Near = &n
		}
		g.Examples = append(g.Examples, e)
	}
}

func sortGroups(groups map[[3]string]*Group) []*Group {
	out := make([]*Group, 0, len(groups))
	for _, g := range groups {
		slices.SortFunc(g.Examples, func(a, b Example) int { return strings.Compare(a.ID, b.ID) })
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *Group) int {
		return cmp.Or(strings.Compare(a.Segment, b.Segment), strings.Compare(a.Rule, b.Rule), strings.Compare(a.RecordedReason, b.RecordedReason))
	})
	return out
}

// ruleJSON is a rule's canonical form for comparison.
func ruleJSON(r v1alpha1.Rule) string {
	if r.Origin == "" {
		r.Origin = v1alpha1.OriginUser
	}
	r.LearnedFrom = nil // provenance, not policy: no drift when git drops it
	b, _ := json.Marshal(r)
	return string(b)
}
