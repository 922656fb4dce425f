package flows

import "github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"

// ReasonLearnRefused is the reason of a violation the control plane adds
// for a flow a policy's learning bounds refused to learn from.
const ReasonLearnRefused = "learn_refused"

// AddViolation appends f, reported by node, to the ring of violations only
// (the flow table already holds it), with the given reason and verdict
// "violation" (the flow itself passed). f is not kept.
func (r *Recorder) AddViolation(node string, f *bulkheadv1.Flow, reason string) {
	if f == nil {
		return
	}
	rec := toRecord(node, f, r.now())
	rec.Reason = reason
	rec.Verdict = verdictName(bulkheadv1.Verdict_VERDICT_VIOLATION)
	r.mu.Lock()
	r.addViolation(rec)
	r.mu.Unlock()
}
