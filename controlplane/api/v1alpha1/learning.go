package v1alpha1

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LearnFrom says whose traffic discover mode may learn from.
// +kubebuilder:validation:Enum=any;enforced
type LearnFrom string

const (
	// LearnFromAny learns from every peer (the default).
	LearnFromAny LearnFrom = "any"
	// LearnFromEnforced learns only from peers whose own segment is in
	// monitor or protect: a peer that is itself still learning (or has no
	// segment at all, an address outside the cluster) cannot teach.
	LearnFromEnforced LearnFrom = "enforced"
)

// Learning bounds what discover mode may learn for a segment, so that a
// compromised pod cannot teach the firewall during discovery. Empty: learn
// from every peer, at any time. Flows refused by the bounds are counted
// (bulkhead_learn_refused_total), logged and listed as violations with
// reason learn_refused.
type Learning struct {
	// From is whose flows may teach rules: any (default) or enforced.
	// +optional
	From LearnFrom `json:"from,omitempty"`
	// Window, when set, is the only time rules are learned, judged by the
	// control plane's clock.
	// +optional
	Window *LearningWindow `json:"window,omitempty"`
}

// LearningWindow is a time window; an open end is unbounded.
type LearningWindow struct {
	// NotBefore: nothing is learned before it.
	// +optional
	NotBefore *metav1.Time `json:"notBefore,omitempty"`
	// NotAfter: nothing is learned after it.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
}

// Reasons a bounded segment refuses to learn from a flow (Learning.Refuse).
const (
	RefusedWindow      = "window"        // outside Learning.Window
	RefusedPeerLearns  = "peer_learning" // from: enforced, the peer is in discover
	RefusedPeerUnknown = "peer_unknown"  // from: enforced, the peer has no segment
)

// Open reports whether t is within the window (a nil window always is).
func (w *LearningWindow) Open(t time.Time) bool {
	if w == nil {
		return true
	}
	if w.NotBefore != nil && t.Before(w.NotBefore.Time) {
		return false
	}
	if w.NotAfter != nil && t.After(w.NotAfter.Time) {
		return false
	}
	return true
}

// EffectiveFrom is From or its default.
func (l *Learning) EffectiveFrom() LearnFrom {
	if l == nil || l.From == "" {
		return LearnFromAny
	}
	return l.From
}

// validate checks spec.learning.
func (l *Learning) validate() []error {
	if l == nil {
		return nil
	}
	var errs []error
	switch l.From {
	case "", LearnFromAny, LearnFromEnforced:
	default:
		errs = append(errs, fmt.Errorf("spec.learning.from: unknown value %q (want any or enforced)", l.From))
	}
	if w := l.Window; w != nil && w.NotBefore != nil && w.NotAfter != nil && w.NotAfter.Before(w.NotBefore) {
		errs = append(errs, fmt.Errorf("spec.learning.window: notAfter %s is before notBefore %s",
			w.NotAfter.UTC().Format(time.RFC3339), w.NotBefore.UTC().Format(time.RFC3339)))
	}
	return errs
}

// LearnedFrom is a learned rule's provenance: the report and the flow that
// taught it first. It is kept when later flows widen the rule, so a rule a
// compromised pod taught names it.
type LearnedFrom struct {
	// Node is the id of the proxy that reported the flow.
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`
	// Peer is the flow's peer: a segment key "namespace/name" or an
	// address.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Peer string `json:"peer,omitempty"`
	// Flow names the flow: "src -> dst:port/protocol verb resource".
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Flow string `json:"flow,omitempty"`
	// Time is when the proxy first saw the flow.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// Bounds of LearnedFrom.
const (
	MaxLearnedFromNode = 253
	MaxLearnedFromFlow = 512
)

// validate checks a rule's learnedFrom.
func (f *LearnedFrom) validate() []error {
	if f == nil {
		return nil
	}
	var errs []error
	if f.Node == "" || len(f.Node) > MaxLearnedFromNode {
		errs = append(errs, fmt.Errorf("learnedFrom.node: want 1 to %d bytes", MaxLearnedFromNode))
	}
	if len(f.Peer) > MaxLearnedFromNode {
		errs = append(errs, fmt.Errorf("learnedFrom.peer: over %d bytes", MaxLearnedFromNode))
	}
	if len(f.Flow) > MaxLearnedFromFlow {
		errs = append(errs, fmt.Errorf("learnedFrom.flow: over %d bytes", MaxLearnedFromFlow))
	}
	return errs
}
