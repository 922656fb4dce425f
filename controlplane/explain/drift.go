package explain

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/history"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

// RuleRef names one rule of a policy.
type RuleRef struct {
	Policy    string `json:"policy"` // "ns/name"
	Direction string `json:"direction"`
	Rule      string `json:"rule"`
	Origin    string `json:"origin"`
}

// ModeDiff is a policy whose mode differs between git and the live store.
type ModeDiff struct {
	Policy string `json:"policy"`
	Git    string `json:"git"`
	Live   string `json:"live"`
}

// DriftReport compares a folder of policies (git) with the live policies
// and the recorded flows.
type DriftReport struct {
	// Drift: Denied, NotInGit, NotLive, Changed or Modes is not empty
	// (Unused is reported but is drift only when the caller says so).
	Drift bool `json:"drift"`
	// Flows counts the recorded flows compared.
	Flows int `json:"flows"`
	// Denied are recorded flows that a live rule allows and no rule in git
	// does, grouped by segment and the rule that allowed them when they
	// were recorded (violations the live policy reports too are not
	// drift: git and the cluster agree on them).
	Denied []*Group `json:"denied"`
	// Unused are rules in git that allowed none of the recorded flows.
	Unused []RuleRef `json:"unused"`
	// NotInGit are live rules (learned ones, typically) missing from git;
	// NotLive are rules in git missing from the live policy; Changed are
	// rules in both that differ.
	NotInGit []RuleRef  `json:"notInGit"`
	NotLive  []RuleRef  `json:"notLive"`
	Changed  []RuleRef  `json:"changed"`
	Modes    []ModeDiff `json:"modes"`
}

// Drift compares git (the folder's policies) with live and with the
// recorded flows, each judged now by both policies. Records without a
// judging segment are skipped.
func Drift(git, live []*v1alpha1.SegmentPolicy, settings store.Settings, recs []history.Record, resolve Resolver) (*DriftReport, error) {
	ev, err := New(git, settings, resolve)
	if err != nil {
		return nil, err
	}
	lev, err := New(live, settings, resolve)
	if err != nil {
		return nil, fmt.Errorf("live policy: %w", err)
	}
	rep := &DriftReport{Denied: []*Group{}, Unused: []RuleRef{}, NotInGit: []RuleRef{}, NotLive: []RuleRef{}, Changed: []RuleRef{}, Modes: []ModeDiff{}}
	used := map[string]bool{}
	groups := map[[3]string]*Group{}
	for i := range recs {
		r := &recs[i]
		ex := ev.Explain(FlowOf(r))
		if ex.Segment == "" {
			continue
		}
		rep.Flows++
		if ex.Allowed() {
			used[ex.Rule] = true
			continue
		}
		if l := lev.Explain(FlowOf(r)); !l.Allowed() {
			continue
		}
		addToGroup(groups, r, &ex)
	}
	rep.Denied = sortGroups(groups)

	gitRules, liveRules := rulesOf(git), rulesOf(live)
	for _, k := range sortedKeys(gitRules) {
		g := gitRules[k]
		if !used[g.ref.Policy+"/"+g.ref.Rule] {
			rep.Unused = append(rep.Unused, g.ref)
		}
		l, ok := liveRules[k]
		switch {
		case !ok:
			rep.NotLive = append(rep.NotLive, g.ref)
		case l.json != g.json:
			rep.Changed = append(rep.Changed, g.ref)
		}
	}
	for _, k := range sortedKeys(liveRules) {
		if _, ok := gitRules[k]; !ok {
			rep.NotInGit = append(rep.NotInGit, liveRules[k].ref)
		}
	}
	liveModes := map[string]v1alpha1.Mode{}
	for _, p := range live {
		liveModes[p.Namespace+"/"+p.Name] = p.Spec.Mode
	}
	for _, p := range git {
		k := p.Namespace + "/" + p.Name
		if lm, ok := liveModes[k]; ok && lm != p.Spec.Mode {
			rep.Modes = append(rep.Modes, ModeDiff{Policy: k, Git: string(p.Spec.Mode), Live: string(lm)})
		}
	}
	slices.SortFunc(rep.Modes, func(a, b ModeDiff) int { return strings.Compare(a.Policy, b.Policy) })
	rep.Drift = len(rep.Denied) > 0 || len(rep.NotInGit) > 0 || len(rep.NotLive) > 0 || len(rep.Changed) > 0 || len(rep.Modes) > 0
	return rep, nil
}

type ruleEntry struct {
	ref  RuleRef
	json string
}

// rulesOf indexes the rules of policies by policy, direction and name.
func rulesOf(ps []*v1alpha1.SegmentPolicy) map[string]ruleEntry {
	out := map[string]ruleEntry{}
	for _, p := range ps {
		p = v1alpha1.ForExport(p)
		k := p.Namespace + "/" + p.Name
		for _, d := range []struct {
			dir   string
			rules []v1alpha1.Rule
		}{{"ingress", p.Spec.Ingress}, {"egress", p.Spec.Egress}} {
			for _, r := range d.rules {
				ref := RuleRef{Policy: k, Direction: d.dir, Rule: r.Name, Origin: string(cmp.Or(r.Origin, v1alpha1.OriginUser))}
				out[k+"\x00"+d.dir+"\x00"+r.Name] = ruleEntry{ref: ref, json: ruleJSON(r)}
			}
		}
	}
	return out
}

func sortedKeys(m map[string]ruleEntry) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
