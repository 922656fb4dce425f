package promote

import (
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
func i64(n int64) *int64                   { return &n }

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	on := &v1alpha1.Promotion{Enabled: true, LearnQuiet: dur(time.Hour), ViolationQuiet: dur(2 * time.Hour), MinMessages: i64(10)}
	until := func(m v1alpha1.Mode) *v1alpha1.Promotion { c := *on; c.Until = m; return &c }
	vetoed := *on
	vetoed.Vetoed = true
	defaults := &v1alpha1.Promotion{Enabled: true}
	tests := []struct {
		name    string
		now     time.Time
		s       State
		promote bool
		to      v1alpha1.Mode
		reason  string
		wait    time.Duration
	}{
		{"disabled nil", t0, State{Mode: v1alpha1.ModeDiscover}, false, "", ReasonDisabled, 0},
		{"disabled", t0.Add(48 * time.Hour), State{Mode: v1alpha1.ModeDiscover, Promotion: &v1alpha1.Promotion{}}, false, "", ReasonDisabled, 0},
		{"vetoed", t0.Add(48 * time.Hour), State{Mode: v1alpha1.ModeDiscover, Promotion: &vetoed, LastLearned: t0}, false, "", ReasonVetoed, 0},
		{"unknown mode", t0.Add(48 * time.Hour), State{Mode: "odd", Promotion: on}, false, "", ReasonDisabled, 0},
		{"discover learning", t0.Add(40 * time.Minute), State{Mode: v1alpha1.ModeDiscover, Promotion: on, LastLearned: t0}, false, v1alpha1.ModeMonitor, ReasonLearning, 20 * time.Minute},
		{"discover quiet exactly", t0.Add(time.Hour), State{Mode: v1alpha1.ModeDiscover, Promotion: on, LastLearned: t0}, true, v1alpha1.ModeMonitor, ReasonPromoted, 0},
		{"discover default quiet not yet", t0.Add(23 * time.Hour), State{Mode: v1alpha1.ModeDiscover, Promotion: defaults, LastLearned: t0}, false, v1alpha1.ModeMonitor, ReasonLearning, time.Hour},
		{"discover default quiet", t0.Add(24 * time.Hour), State{Mode: v1alpha1.ModeDiscover, Promotion: defaults, LastLearned: t0}, true, v1alpha1.ModeMonitor, ReasonPromoted, 0},
		{"monitor violations", t0.Add(time.Hour), State{Mode: v1alpha1.ModeMonitor, Promotion: on, LastViolation: t0, Allowed: 1000}, false, v1alpha1.ModeProtect, ReasonViolations, time.Hour},
		{"monitor too few", t0.Add(3 * time.Hour), State{Mode: v1alpha1.ModeMonitor, Promotion: on, LastViolation: t0, Allowed: 9}, false, v1alpha1.ModeProtect, ReasonTooFewMessages, 0},
		{"monitor due", t0.Add(3 * time.Hour), State{Mode: v1alpha1.ModeMonitor, Promotion: on, LastViolation: t0, Allowed: 10}, true, v1alpha1.ModeProtect, ReasonPromoted, 0},
		{"monitor default min", t0.Add(25 * time.Hour), State{Mode: v1alpha1.ModeMonitor, Promotion: defaults, LastViolation: t0, Allowed: 99}, false, v1alpha1.ModeProtect, ReasonTooFewMessages, 0},
		{"until monitor at monitor", t0.Add(48 * time.Hour), State{Mode: v1alpha1.ModeMonitor, Promotion: until(v1alpha1.ModeMonitor), LastViolation: t0, Allowed: 100}, false, "", ReasonReached, 0},
		{"until monitor from discover", t0.Add(48 * time.Hour), State{Mode: v1alpha1.ModeDiscover, Promotion: until(v1alpha1.ModeMonitor), LastLearned: t0}, true, v1alpha1.ModeMonitor, ReasonPromoted, 0},
		{"protect reached", t0.Add(48 * time.Hour), State{Mode: v1alpha1.ModeProtect, Promotion: on}, false, "", ReasonReached, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.now, tt.s)
			if d.Promote != tt.promote || d.To != tt.to || d.Reason != tt.reason || d.Wait != tt.wait || d.From != tt.s.Mode {
				t.Errorf("Decide = %+v, want promote=%v to=%q reason=%s wait=%v", d, tt.promote, tt.to, tt.reason, tt.wait)
			}
			if d.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestPromotionValidate(t *testing.T) {
	base := func(pr *v1alpha1.Promotion) *v1alpha1.SegmentPolicy {
		p := &v1alpha1.SegmentPolicy{Spec: v1alpha1.SegmentPolicySpec{Promotion: pr}}
		p.Name, p.Namespace = "cart", "shop"
		return p
	}
	for _, tt := range []struct {
		name string
		pr   *v1alpha1.Promotion
		ok   bool
	}{
		{"nil", nil, true},
		{"full", &v1alpha1.Promotion{Enabled: true, LearnQuiet: dur(time.Hour), ViolationQuiet: dur(time.Hour), MinMessages: i64(0), Until: v1alpha1.ModeMonitor}, true},
		{"negative quiet", &v1alpha1.Promotion{LearnQuiet: dur(-time.Second)}, false},
		{"huge quiet", &v1alpha1.Promotion{ViolationQuiet: dur(400 * 24 * time.Hour)}, false},
		{"negative min", &v1alpha1.Promotion{MinMessages: i64(-1)}, false},
		{"until discover", &v1alpha1.Promotion{Until: v1alpha1.ModeDiscover}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := base(tt.pr).Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
