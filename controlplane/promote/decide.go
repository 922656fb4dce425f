// Package promote moves segments that opted in (spec.promotion.enabled)
// towards enforcement on their own: discover → monitor once no rule has been
// learned for spec.promotion.learnQuiet, monitor → protect once the segment
// has seen no violation for spec.promotion.violationQuiet and at least
// spec.promotion.minMessages allowed messages in monitor.
//
// Decide is the pure decision; a Promoter runs it for every policy of the
// store on a timer (Start), calls the store's SetMode when a segment is due,
// logs every promotion and veto, records it as the status condition
// "Promotion" and in a bounded list of recent Records (Records). The store
// keeps activity as counters (store.Activity); the Promoter turns changes of
// those counters into times with its own clock, so after a restart every
// quiet period starts again (never earlier than it should).
//
// An operator stops promotion of a segment with spec.promotion.vetoed
// (Veto sets it); the Promoter sets it itself when it sees a segment's mode
// lowered by someone else, since it never demotes.
package promote

import (
	"fmt"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// ConditionType is the type of the status condition a Promoter sets.
const ConditionType = "Promotion"

// Reasons of Decisions and of the condition.
const (
	ReasonPromoted       = "Promoted"       // moved up one mode
	ReasonLearning       = "Learning"       // discover: a rule was learned too recently
	ReasonViolations     = "Violations"     // monitor: a violation was seen too recently
	ReasonTooFewMessages = "TooFewMessages" // monitor: not enough allowed traffic yet
	ReasonReached        = "Reached"        // at spec.promotion.until or beyond
	ReasonVetoed         = "Vetoed"         // spec.promotion.vetoed
	ReasonDisabled       = "Disabled"       // no spec.promotion or not enabled
)

// State is what Decide needs to know of one segment.
type State struct {
	// Mode is the segment's effective mode.
	Mode v1alpha1.Mode
	// Promotion is the policy's spec.promotion (nil: disabled).
	Promotion *v1alpha1.Promotion
	// LastLearned is when a rule was last learned (or watching began).
	LastLearned time.Time
	// LastViolation is when a violation was last seen (or the segment
	// entered monitor, or watching began).
	LastViolation time.Time
	// Allowed counts the allowed messages since the segment entered its
	// mode (or watching began).
	Allowed int64
}

// Decision is what Decide concluded.
type Decision struct {
	// Promote says to set mode To.
	Promote bool
	From    v1alpha1.Mode
	To      v1alpha1.Mode // the next mode, also when not yet due
	// Reason is one of the Reason constants; Message says it for people.
	Reason  string
	Message string
	// Wait is how long at least until the segment can be due, when a quiet
	// period is what it waits for; 0 otherwise.
	Wait time.Duration
}

// rank orders modes; an unknown mode ranks below discover.
func rank(m v1alpha1.Mode) int {
	switch m {
	case v1alpha1.ModeDiscover:
		return 1
	case v1alpha1.ModeMonitor:
		return 2
	case v1alpha1.ModeProtect:
		return 3
	}
	return 0
}

// Decide says whether the segment in state s is due for promotion at now.
// It is pure: the same arguments give the same Decision.
func Decide(now time.Time, s State) Decision {
	d := Decision{From: s.Mode}
	p := s.Promotion
	switch {
	case p == nil || !p.Enabled:
		d.Reason, d.Message = ReasonDisabled, "promotion is not enabled"
		return d
	case p.Vetoed:
		d.Reason, d.Message = ReasonVetoed, "promotion was vetoed by an operator"
		return d
	case rank(s.Mode) == 0:
		d.Reason, d.Message = ReasonDisabled, fmt.Sprintf("unknown mode %q", s.Mode)
		return d
	case rank(s.Mode) >= rank(p.EffectiveUntil()):
		d.Reason, d.Message = ReasonReached, fmt.Sprintf("mode %s reached (until %s)", s.Mode, p.EffectiveUntil())
		return d
	}
	if s.Mode == v1alpha1.ModeDiscover {
		d.To = v1alpha1.ModeMonitor
		quiet := p.EffectiveLearnQuiet()
		if since := now.Sub(s.LastLearned); since < quiet {
			d.Reason, d.Wait = ReasonLearning, quiet-since
			d.Message = fmt.Sprintf("a rule was learned %v ago, waiting for %v without one", since.Round(time.Second), quiet)
			return d
		}
		d.Promote, d.Reason = true, ReasonPromoted
		d.Message = fmt.Sprintf("no rule learned for %v: discover → monitor", quiet)
		return d
	}
	d.To = v1alpha1.ModeProtect
	quiet := p.EffectiveViolationQuiet()
	if since := now.Sub(s.LastViolation); since < quiet {
		d.Reason, d.Wait = ReasonViolations, quiet-since
		d.Message = fmt.Sprintf("last violation (or entering monitor) %v ago, waiting for %v without one", since.Round(time.Second), quiet)
		return d
	}
	if minimum := p.EffectiveMinMessages(); s.Allowed < minimum {
		d.Reason = ReasonTooFewMessages
		d.Message = fmt.Sprintf("%d allowed messages in monitor, waiting for %d", s.Allowed, minimum)
		return d
	}
	d.Promote, d.Reason = true, ReasonPromoted
	d.Message = fmt.Sprintf("no violation for %v and %d allowed messages: monitor → protect", quiet, s.Allowed)
	return d
}
