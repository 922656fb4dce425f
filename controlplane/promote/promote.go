package promote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Store is what a Promoter needs of the store (*store.Store).
type Store interface {
	List() []*v1alpha1.SegmentPolicy
	Get(ns, name string) (*v1alpha1.SegmentPolicy, bool)
	Apply(ps []*v1alpha1.SegmentPolicy) ([]string, error)
	Settings() store.Settings
	Activity(segmentKey string) store.Activity
	SetMode(ns, name string, m v1alpha1.Mode) error
	SetCondition(segmentKey string, c metav1.Condition) bool
}

var _ Store = (*store.Store)(nil)

// Options are a Promoter's optional settings; the zero value is usable.
type Options struct {
	// Interval is how often every segment is checked. Zero: 10s.
	Interval time.Duration
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Tick, when set, replaces the Interval timer: a check runs on every
	// receive (tests drive the loop with it).
	Tick <-chan time.Time
	// MaxRecords bounds the recent promotions and vetoes kept. Zero: 256.
	MaxRecords int
}

// Record is one promotion or veto, as Records lists it.
type Record struct {
	Time    time.Time     `json:"time"`
	Segment string        `json:"segment"` // "namespace/name"
	From    v1alpha1.Mode `json:"from"`
	To      v1alpha1.Mode `json:"to,omitempty"` // empty for a veto
	Reason  string        `json:"reason"`       // ReasonPromoted or ReasonVetoed
	Message string        `json:"message"`
}

// track is what the Promoter saw of one segment.
type track struct {
	mode          v1alpha1.Mode
	act           store.Activity
	lastLearned   time.Time
	lastViolation time.Time
	allowedBase   int64 // act.Allowed when the segment entered its mode
}

// Promoter checks the segments that opted in and promotes those due.
type Promoter struct {
	st   Store
	log  *slog.Logger
	opts Options

	mu      sync.Mutex
	tracks  map[string]*track // by segment key; only while the loop runs
	records []Record          // oldest first, at most opts.MaxRecords

	stepped chan struct{} // tests: receives after every check
}

// New returns a Promoter of the policies of st. It starts nothing. A nil
// log discards.
func New(st Store, log *slog.Logger, opts Options) *Promoter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = 256
	}
	return &Promoter{st: st, log: log, opts: opts, tracks: make(map[string]*track)}
}

// Start checks every segment at once and then every Interval (or on every
// Tick) until ctx is done; it returns nil then.
func (p *Promoter) Start(ctx context.Context) error {
	tick := p.opts.Tick
	if tick == nil {
		t := time.NewTicker(p.opts.Interval)
		defer t.Stop()
		tick = t.C
		p.check()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			p.check()
		}
	}
}

// Records returns the recent promotions and vetoes, newest first; the slice
// is the caller's.
func (p *Promoter) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.records)
	slices.Reverse(out)
	return out
}

// ErrNoPolicy is returned by Veto for a segment without a policy.
var ErrNoPolicy = errors.New("segment has no policy")

// Veto stops promotion of segment ns/name for good: it sets
// spec.promotion.vetoed (creating spec.promotion, disabled, when absent) and
// records it. by says who vetoed, for the log and the record.
func (p *Promoter) Veto(ns, name, by string) error {
	key := ns + "/" + name
	pol, ok := p.st.Get(ns, name)
	if !ok {
		return fmt.Errorf("veto promotion of %s: %w", key, ErrNoPolicy)
	}
	mode := pol.Spec.Mode
	if mode == "" {
		mode = p.st.Settings().Mode(ns)
	}
	return p.veto(pol, mode, fmt.Sprintf("promotion vetoed by %s", by))
}

// VetoIfEnabled vetoes promotion of segment ns/name like Veto, but only
// when its policy has promotion enabled and not yet vetoed; it reports
// whether it vetoed. The admin API calls it after a person set the
// segment's mode.
func (p *Promoter) VetoIfEnabled(ns, name, by string) (bool, error) {
	pol, ok := p.st.Get(ns, name)
	if !ok || pol.Spec.Promotion == nil || !pol.Spec.Promotion.Enabled || pol.Spec.Promotion.Vetoed {
		return false, nil
	}
	mode := pol.Spec.Mode
	if mode == "" {
		mode = p.st.Settings().Mode(ns)
	}
	if err := p.veto(pol, mode, fmt.Sprintf("promotion vetoed by %s", by)); err != nil {
		return false, err
	}
	return true, nil
}

func (p *Promoter) veto(pol *v1alpha1.SegmentPolicy, mode v1alpha1.Mode, msg string) error {
	key := pol.Namespace + "/" + pol.Name
	if pol.Spec.Promotion == nil {
		pol.Spec.Promotion = &v1alpha1.Promotion{}
	}
	if !pol.Spec.Promotion.Vetoed {
		pol.Spec.Promotion.Vetoed = true
		if _, err := p.st.Apply([]*v1alpha1.SegmentPolicy{pol}); err != nil {
			return fmt.Errorf("veto promotion of %s: %w", key, err)
		}
	}
	now := p.opts.Now()
	p.log.Info("promotion vetoed", "segment", key, "mode", mode, "message", msg)
	p.st.SetCondition(key, metav1.Condition{
		Type: ConditionType, Status: metav1.ConditionFalse, Reason: ReasonVetoed,
		Message: msg, LastTransitionTime: metav1.NewTime(now),
	})
	p.record(Record{Time: now, Segment: key, From: mode, Reason: ReasonVetoed, Message: msg})
	return nil
}

func (p *Promoter) record(r Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.records) >= p.opts.MaxRecords {
		p.records = slices.Delete(p.records, 0, len(p.records)-p.opts.MaxRecords+1)
	}
	p.records = append(p.records, r)
}

// check runs Decide for every policy that opted in and acts on it.
func (p *Promoter) check() {
	defer func() {
		if p.stepped != nil {
			p.stepped <- struct{}{}
		}
	}()
	now := p.opts.Now()
	settings := p.st.Settings()
	seen := make(map[string]bool)
	for _, pol := range p.st.List() {
		key := pol.Namespace + "/" + pol.Name
		pr := pol.Spec.Promotion
		if pr == nil || !pr.Enabled {
			continue
		}
		seen[key] = true
		mode := pol.Spec.Mode
		if mode == "" {
			mode = settings.Mode(pol.Namespace)
		}
		tr := p.observe(key, mode, now)
		if tr == nil {
			// Someone lowered the mode: the Promoter never demotes, so
			// that is an operator saying no.
			if !pr.Vetoed {
				if err := p.veto(pol, mode, "mode lowered by an operator"); err != nil {
					p.log.Warn("promotion: cannot veto", "segment", key, "err", err)
				}
			}
			continue
		}
		d := Decide(now, State{
			Mode: mode, Promotion: pr,
			LastLearned: tr.lastLearned, LastViolation: tr.lastViolation,
			Allowed: tr.act.Allowed - tr.allowedBase,
		})
		p.act(key, pol, d, now)
	}
	p.mu.Lock()
	for key := range p.tracks {
		if !seen[key] {
			delete(p.tracks, key)
		}
	}
	p.mu.Unlock()
}

// observe updates the track of key from the store's counters. It returns
// nil when the mode went down since the last check.
func (p *Promoter) observe(key string, mode v1alpha1.Mode, now time.Time) *track {
	act := p.st.Activity(key)
	p.mu.Lock()
	defer p.mu.Unlock()
	tr, ok := p.tracks[key]
	if !ok {
		tr = &track{mode: mode, act: act, lastLearned: now, lastViolation: now, allowedBase: act.Allowed}
		p.tracks[key] = tr
		return tr
	}
	lowered := rank(mode) < rank(tr.mode)
	if mode != tr.mode {
		tr.mode, tr.lastViolation, tr.allowedBase = mode, now, act.Allowed
	}
	if act.Learned != tr.act.Learned {
		tr.lastLearned = now
	}
	if act.Violations != tr.act.Violations {
		tr.lastViolation = now
	}
	tr.act = act
	if lowered {
		return nil
	}
	return tr
}

// act applies decision d to segment key.
func (p *Promoter) act(key string, pol *v1alpha1.SegmentPolicy, d Decision, now time.Time) {
	cond := metav1.Condition{
		Type: ConditionType, Status: metav1.ConditionFalse, Reason: d.Reason,
		Message: d.Message, LastTransitionTime: metav1.NewTime(now),
	}
	if !d.Promote {
		if d.Reason == ReasonReached {
			cond.Status = metav1.ConditionTrue
		}
		p.log.Debug("promotion: not due", "segment", key, "mode", d.From, "next", d.To, "reason", d.Reason, "message", d.Message, "wait", d.Wait)
		p.st.SetCondition(key, cond)
		return
	}
	if err := p.st.SetMode(pol.Namespace, pol.Name, d.To); err != nil {
		p.log.Warn("promotion failed", "segment", key, "from", d.From, "to", d.To, "err", err)
		cond.Reason, cond.Message = "Failed", err.Error()
		p.st.SetCondition(key, cond)
		return
	}
	p.mu.Lock()
	if tr := p.tracks[key]; tr != nil {
		tr.mode, tr.lastViolation, tr.allowedBase = d.To, now, tr.act.Allowed
	}
	p.mu.Unlock()
	p.log.Info("segment promoted", "segment", key, "from", d.From, "to", d.To, "message", d.Message)
	cond.Status = metav1.ConditionTrue
	p.st.SetCondition(key, cond)
	p.record(Record{Time: now, Segment: key, From: d.From, To: d.To, Reason: ReasonPromoted, Message: d.Message})
}
