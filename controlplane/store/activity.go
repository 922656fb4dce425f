package store

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Activity is what a segment has done since the store was opened: counters
// that only grow, for watchers (controlplane/promote) that notice a change
// by comparing two readings. Status only, in memory.
type Activity struct {
	// Learned counts the MergeLearned calls that changed the policy.
	Learned int64
	// Violations counts the messages no rule allowed (Violations).
	Violations int64
	// Allowed counts the messages the policy's rules allowed (hits).
	Allowed int64
}

// activity is the Store's extra status: conditions and learned counts, by
// segment key. Guarded by Store.mu.
type activity struct {
	learned    map[string]int64
	conditions map[string][]metav1.Condition
}

// Activity returns the counters of segment segmentKey ("namespace/name").
func (s *Store) Activity(segmentKey string) Activity {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := Activity{Learned: s.act.learned[segmentKey], Violations: s.violations[segmentKey]}
	if e, ok := s.policies[segmentKey]; ok {
		for _, h := range e.hits {
			a.Allowed += h.Hits
		}
	}
	return a
}

// SetCondition sets condition c (by type) in the status of segment
// segmentKey, which must have a policy; LastTransitionTime is kept when the
// status does not change. It reports whether the policy exists. Status only:
// no file is written and Changes does not signal.
func (s *Store) SetCondition(segmentKey string, c metav1.Condition) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.policies[segmentKey]; !ok {
		return false
	}
	if s.act.conditions == nil {
		s.act.conditions = make(map[string][]metav1.Condition)
	}
	conds := s.act.conditions[segmentKey]
	meta.SetStatusCondition(&conds, c)
	s.act.conditions[segmentKey] = conds
	return true
}

// noteLearned counts a change MergeLearned made (caller holds mu).
func (s *Store) noteLearned(key string) {
	if s.act.learned == nil {
		s.act.learned = make(map[string]int64)
	}
	if _, ok := s.act.learned[key]; !ok && len(s.act.learned) >= MaxViolationKeys {
		return
	}
	s.act.learned[key]++
}

// conditionsOf returns a copy of the conditions of key (caller holds mu).
func (s *Store) conditionsOf(key string) []metav1.Condition {
	var out []metav1.Condition
	for _, c := range s.act.conditions[key] {
		out = append(out, *c.DeepCopy())
	}
	return out
}
