package v1alpha1

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Promotion lets the control plane move a segment towards enforcement on
// its own: discover → monitor once no rule has been learned for LearnQuiet,
// monitor → protect once the segment has seen no violation for
// ViolationQuiet and at least MinMessages allowed messages. Each step is
// logged and recorded as the status condition "Promoted". Setting Vetoed
// (or setting the mode by hand, which the CLI does with vetoed) stops it.
type Promotion struct {
	// Enabled opts the segment in.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// LearnQuiet is how long no new rule may have been learned before
	// discover → monitor. Default 24h.
	// +optional
	LearnQuiet *metav1.Duration `json:"learnQuiet,omitempty"`
	// ViolationQuiet is how long the segment must have seen no violation
	// before monitor → protect. Default 24h.
	// +optional
	ViolationQuiet *metav1.Duration `json:"violationQuiet,omitempty"`
	// MinMessages is how many allowed messages the segment must have seen
	// in monitor (counted since it entered monitor, or since the control
	// plane started) before monitor → protect. Default 100.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinMessages *int64 `json:"minMessages,omitempty"`
	// Until is the last mode promotion moves to: monitor or protect.
	// Default protect.
	// +kubebuilder:validation:XValidation:rule="self in ['monitor', 'protect']",message="want monitor or protect"
	// +optional
	Until Mode `json:"until,omitempty"`
	// Vetoed stops promotion of this segment: an operator said no.
	// +optional
	Vetoed bool `json:"vetoed,omitempty"`
}

// Promotion defaults.
const (
	DefaultLearnQuiet     = 24 * time.Hour
	DefaultViolationQuiet = 24 * time.Hour
	DefaultMinMessages    = 100
	// MaxPromotionQuiet bounds LearnQuiet and ViolationQuiet.
	MaxPromotionQuiet = 365 * 24 * time.Hour
)

// EffectiveLearnQuiet is LearnQuiet or its default.
func (p *Promotion) EffectiveLearnQuiet() time.Duration {
	if p == nil || p.LearnQuiet == nil {
		return DefaultLearnQuiet
	}
	return p.LearnQuiet.Duration
}

// EffectiveViolationQuiet is ViolationQuiet or its default.
func (p *Promotion) EffectiveViolationQuiet() time.Duration {
	if p == nil || p.ViolationQuiet == nil {
		return DefaultViolationQuiet
	}
	return p.ViolationQuiet.Duration
}

// EffectiveMinMessages is MinMessages or its default.
func (p *Promotion) EffectiveMinMessages() int64 {
	if p == nil || p.MinMessages == nil {
		return DefaultMinMessages
	}
	return *p.MinMessages
}

// EffectiveUntil is Until or protect.
func (p *Promotion) EffectiveUntil() Mode {
	if p == nil || p.Until == "" {
		return ModeProtect
	}
	return p.Until
}

// validate reports the problems of a promotion, each with its field path
// below spec.promotion.
func (p *Promotion) validate() []error {
	if p == nil {
		return nil
	}
	var errs []error
	for _, d := range []struct {
		name string
		v    *metav1.Duration
	}{{"learnQuiet", p.LearnQuiet}, {"violationQuiet", p.ViolationQuiet}} {
		if d.v != nil && (d.v.Duration < 0 || d.v.Duration > MaxPromotionQuiet) {
			errs = append(errs, fmt.Errorf("spec.promotion.%s: %v out of range [0, %v]", d.name, d.v.Duration, MaxPromotionQuiet))
		}
	}
	if p.MinMessages != nil && *p.MinMessages < 0 {
		errs = append(errs, fmt.Errorf("spec.promotion.minMessages: %d is negative", *p.MinMessages))
	}
	switch p.Until {
	case "", ModeMonitor, ModeProtect:
	default:
		errs = append(errs, fmt.Errorf("spec.promotion.until: %q (want monitor or protect)", p.Until))
	}
	return errs
}
