// Package store holds Bulkhead's segment policies, modes and their observed
// status. Standalone, its source of truth is a folder:
//
//	<dir>/settings.yaml                      defaultMode, namespaceModes, infrastructure
//	<dir>/policies/<namespace>/<name>.yaml   one SegmentPolicy, export form
//
// Every write replaces a file atomically (temporary file in the same folder,
// fsync, rename, fsync of the folder), so a crash leaves the old or the new
// content, never a mix. Status (rule counts, hits, violations) lives in memory
// only and is never written to the files.
//
// A Store is safe for concurrent use. Changes signals after every change that
// affects compilation (policies, modes), not after status updates.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// ErrNotFound is returned for a policy the store does not hold.
var ErrNotFound = errors.New("policy not found")

// MaxViolationKeys bounds the segments whose violations are counted.
const MaxViolationKeys = 1 << 16

const (
	policiesDir  = "policies"
	settingsFile = "settings.yaml"
	fileExt      = ".yaml"
)

// Direction says which rules of a policy a learned rule belongs to.
type Direction uint8

const (
	// Ingress rules allow flows into the segment.
	Ingress Direction = iota + 1
	// Egress rules allow flows out of the segment.
	Egress
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Settings are the default modes, the cluster's and per namespace, and the
// infrastructure allowances. An empty DefaultMode means discover.
type Settings struct {
	DefaultMode    v1alpha1.Mode            `json:"defaultMode,omitempty"`
	NamespaceModes map[string]v1alpha1.Mode `json:"namespaceModes,omitempty"`
	Infrastructure Infrastructure           `json:"infrastructure,omitzero"`
}

// Mode is the default mode of a segment of namespace ns that does not set
// its own: the namespace's, else the cluster's, else discover.
func (s Settings) Mode(ns string) v1alpha1.Mode {
	if m := s.NamespaceModes[ns]; m != "" {
		return m
	}
	if s.DefaultMode != "" {
		return s.DefaultMode
	}
	return v1alpha1.ModeDiscover
}

// Validate reports every unknown mode, bad namespace name and bad
// infrastructure allowance.
func (s Settings) Validate() error {
	var errs []error
	if err := s.Infrastructure.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("infrastructure: %w", err))
	}
	if err := checkMode(s.DefaultMode); err != nil {
		errs = append(errs, fmt.Errorf("defaultMode: %w", err))
	}
	for _, ns := range sortedKeys(s.NamespaceModes) {
		if err := checkNamespace(ns); err != nil {
			errs = append(errs, fmt.Errorf("namespaceModes: %w", err))
		}
		if err := checkMode(s.NamespaceModes[ns]); err != nil {
			errs = append(errs, fmt.Errorf("namespaceModes[%s]: %w", ns, err))
		}
	}
	return errors.Join(errs...)
}

func (s Settings) clone() Settings {
	c := Settings{DefaultMode: s.DefaultMode, Infrastructure: s.Infrastructure.clone()}
	if len(s.NamespaceModes) > 0 {
		c.NamespaceModes = make(map[string]v1alpha1.Mode, len(s.NamespaceModes))
		for k, v := range s.NamespaceModes {
			c.NamespaceModes[k] = v
		}
	}
	return c
}

// Hit counts the traffic one rule allowed.
type Hit struct {
	// SegmentKey is the policy's "namespace/name".
	SegmentKey string
	// Rule is the rule's name within the policy. The compiled name
	// ("namespace/name/rule") is accepted too.
	Rule  string
	Count int64
	Last  time.Time
}

// Store is the set of policies and settings, backed by a folder.
type Store struct {
	dir     string
	log     *slog.Logger
	changes chan struct{}

	mu         sync.RWMutex
	policies   map[string]*entry // by "namespace/name"
	settings   Settings
	violations map[string]int64 // by segment key
	act        activity         // learned counts, conditions (activity.go)
}

// entry is one policy as held in memory: its export form, the bytes of its
// file, and its rule hits.
type entry struct {
	p     *v1alpha1.SegmentPolicy // export form, no status
	data  []byte                  // MarshalYAML of p: the file's content
	rules map[string]bool         // rule names of both directions
	hits  map[string]v1alpha1.RuleStatus
}

func newEntry(p *v1alpha1.SegmentPolicy, data []byte, old *entry) *entry {
	e := &entry{p: p, data: data, rules: make(map[string]bool), hits: make(map[string]v1alpha1.RuleStatus)}
	for _, rules := range [][]v1alpha1.Rule{p.Spec.Ingress, p.Spec.Egress} {
		for _, r := range rules {
			e.rules[r.Name] = true
		}
	}
	if old != nil {
		for name, h := range old.hits {
			if e.rules[name] {
				e.hits[name] = h
			}
		}
	}
	return e
}

// Open loads the folder dir, creating it when absent. Every policy file is
// read and validated; any bad file fails Open with an error naming it, and
// nothing is loaded. Temporary files left by an interrupted write are
// removed. A nil log discards.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		dir:        dir,
		log:        log,
		changes:    make(chan struct{}, 1),
		policies:   make(map[string]*entry),
		violations: make(map[string]int64),
	}
	if err := os.MkdirAll(filepath.Join(dir, policiesDir), 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.loadSettings(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.loadPolicies(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	log.Info("store opened", "dir", dir, "policies", len(s.policies))
	return s, nil
}

func (s *Store) loadSettings() error {
	s.removeTemps(s.dir)
	path := filepath.Join(s.dir, settingsFile)
	data, err := readBounded(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st Settings
	if err := yaml.UnmarshalStrict(data, &st); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := st.Validate(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	s.settings = st
	return nil
}

func (s *Store) loadPolicies() error {
	root := filepath.Join(s.dir, policiesDir)
	nsDirs, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, nd := range nsDirs {
		ns := nd.Name()
		if strings.HasPrefix(ns, ".") {
			continue
		}
		nsPath := filepath.Join(root, ns)
		if !nd.IsDir() {
			s.log.Warn("store: ignoring a file that is not a namespace folder", "path", nsPath)
			continue
		}
		s.removeTemps(nsPath)
		files, err := os.ReadDir(nsPath)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			path := filepath.Join(nsPath, f.Name())
			if strings.HasPrefix(f.Name(), ".") {
				continue
			}
			if f.IsDir() || !strings.HasSuffix(f.Name(), fileExt) {
				s.log.Warn("store: ignoring a file that is not a policy", "path", path)
				continue
			}
			if err := s.loadPolicy(path, ns, strings.TrimSuffix(f.Name(), fileExt)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Store) loadPolicy(path, ns, name string) error {
	data, err := readBounded(path)
	if err != nil {
		return err
	}
	ps, err := v1alpha1.UnmarshalYAML(data)
	if err != nil {
		return err
	}
	if len(ps) != 1 {
		return fmt.Errorf("%d policies, want exactly one", len(ps))
	}
	p := ps[0]
	if p.Namespace != ns || p.Name != name {
		return fmt.Errorf("holds %s/%s, but its path says %s/%s", p.Namespace, p.Name, ns, name)
	}
	if err := p.Validate(); err != nil {
		return err
	}
	np, enc, err := exportForm(p)
	if err != nil {
		return err
	}
	s.policies[ns+"/"+name] = newEntry(np, enc, nil)
	return nil
}

// removeTemps deletes the temporary files an interrupted write left in dir.
func (s *Store) removeTemps(dir string) {
	files, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, f := range files {
		if n := f.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, tempMarker) && f.Type().IsRegular() {
			path := filepath.Join(dir, n)
			if err := os.Remove(path); err != nil {
				s.log.Warn("store: cannot remove a stale temporary file", "path", path, "err", err)
			} else {
				s.log.Info("store: removed a stale temporary file", "path", path)
			}
		}
	}
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, v1alpha1.MaxPolicyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > v1alpha1.MaxPolicyFile {
		return nil, fmt.Errorf("more than %d bytes", v1alpha1.MaxPolicyFile)
	}
	return data, nil
}

// exportForm returns the export form of p and its file content.
func exportForm(p *v1alpha1.SegmentPolicy) (*v1alpha1.SegmentPolicy, []byte, error) {
	np := v1alpha1.ForExport(p)
	data, err := v1alpha1.MarshalYAML([]*v1alpha1.SegmentPolicy{np})
	if err != nil {
		return nil, nil, err
	}
	return np, data, nil
}

func (s *Store) policyPath(ns, name string) string {
	return filepath.Join(s.dir, policiesDir, ns, name+fileExt)
}

func (s *Store) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Changes returns a channel (capacity 1, coalesced) that receives after
// every change to policies or modes: a receive means "something changed since
// the last receive". Status updates do not signal.
func (s *Store) Changes() <-chan struct{} { return s.changes }

// List returns deep copies of every policy, sorted by namespace and name,
// with status.
func (s *Store) List() []*v1alpha1.SegmentPolicy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*v1alpha1.SegmentPolicy, 0, len(s.policies))
	for _, key := range sortedKeys(s.policies) {
		out = append(out, s.withStatus(key, s.policies[key]))
	}
	return out
}

// Get returns a deep copy of one policy with status.
func (s *Store) Get(ns, name string) (*v1alpha1.SegmentPolicy, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	key := ns + "/" + name
	e, ok := s.policies[key]
	if !ok {
		return nil, false
	}
	return s.withStatus(key, e), true
}

func (s *Store) withStatus(key string, e *entry) *v1alpha1.SegmentPolicy {
	p := e.p.DeepCopy()
	p.Status.IngressRules = int32(len(p.Spec.Ingress))
	for _, rules := range [][]v1alpha1.Rule{p.Spec.Ingress, p.Spec.Egress} {
		for _, r := range rules {
			if r.Origin == v1alpha1.OriginLearned {
				p.Status.LearnedRules++
			}
		}
	}
	p.Status.Violations = s.violations[key]
	p.Status.Conditions = s.conditionsOf(key)
	for _, name := range sortedKeys(e.hits) {
		h := e.hits[name]
		p.Status.Rules = append(p.Status.Rules, *h.DeepCopy())
	}
	return p
}

// Export returns the policies of namespace ns (all when ns is empty) in the
// deterministic export form of v1alpha1.MarshalYAML: no status.
func (s *Store) Export(ns string) ([]byte, error) {
	s.mu.RLock()
	ps := make([]*v1alpha1.SegmentPolicy, 0, len(s.policies))
	for _, e := range s.policies {
		if ns == "" || e.p.Namespace == ns {
			ps = append(ps, e.p)
		}
	}
	out, err := v1alpha1.MarshalYAML(ps)
	s.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return out, nil
}

// Settings returns a copy of the default modes.
func (s *Store) Settings() Settings {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.settings.clone()
}

// EffectiveMode is the mode segment ns/name is judged under: its policy's
// mode, else the namespace's default, else the cluster's, else discover.
func (s *Store) EffectiveMode(ns, name string) v1alpha1.Mode {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e, ok := s.policies[ns+"/"+name]; ok && e.p.Spec.Mode != "" {
		return e.p.Spec.Mode
	}
	return s.settings.Mode(ns)
}

// SetDefaultMode sets the cluster's default mode; empty means discover.
func (s *Store) SetDefaultMode(m v1alpha1.Mode) error {
	if err := checkMode(m); err != nil {
		return fmt.Errorf("set default mode: %w", err)
	}
	return s.updateSettings(func(st *Settings) { st.DefaultMode = m })
}

// SetNamespaceMode sets the default mode of namespace ns; empty removes it.
func (s *Store) SetNamespaceMode(ns string, m v1alpha1.Mode) error {
	if err := checkNamespace(ns); err != nil {
		return fmt.Errorf("set namespace mode: %w", err)
	}
	if err := checkMode(m); err != nil {
		return fmt.Errorf("set namespace mode: %w", err)
	}
	return s.updateSettings(func(st *Settings) {
		if m == "" {
			delete(st.NamespaceModes, ns)
			return
		}
		if st.NamespaceModes == nil {
			st.NamespaceModes = make(map[string]v1alpha1.Mode)
		}
		st.NamespaceModes[ns] = m
	})
}

// SetInfrastructure replaces the infrastructure allowances.
func (s *Store) SetInfrastructure(in Infrastructure) error {
	if err := in.Validate(); err != nil {
		return fmt.Errorf("set infrastructure: %w", err)
	}
	return s.updateSettings(func(st *Settings) { st.Infrastructure = in.clone() })
}

func (s *Store) updateSettings(f func(*Settings)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.settings.clone()
	f(&next)
	if len(next.NamespaceModes) == 0 {
		next.NamespaceModes = nil
	}
	data, err := yaml.Marshal(next)
	if err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	old, err := yaml.Marshal(s.settings)
	if err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := writeAtomic(filepath.Join(s.dir, settingsFile), data); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	s.settings = next
	s.notify()
	return nil
}

// Apply validates every policy and, when all are valid, stores them all;
// otherwise it changes nothing and reports every problem, each prefixed with
// its policy. A policy whose export form equals the stored one is not
// rewritten. It returns the keys ("namespace/name") of the policies that
// changed, sorted. Status is kept; the policies' own status is ignored.
//
// Validation is all-or-nothing; so is writing, except that a failure while
// renaming the staged files (a failing disk) may leave the ones renamed
// before it applied, in memory as on disk.
func (s *Store) Apply(ps []*v1alpha1.SegmentPolicy) ([]string, error) {
	var errs []error
	seen := make(map[string]int, len(ps))
	for i, p := range ps {
		if p == nil {
			errs = append(errs, fmt.Errorf("policy %d: nil", i+1))
			continue
		}
		key := p.Namespace + "/" + p.Name
		if err := p.Validate(); err != nil {
			for _, pr := range Problems(err) {
				errs = append(errs, fmt.Errorf("%s: %s", key, pr))
			}
		}
		if j, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%s: given twice (policies %d and %d)", key, j+1, i+1))
		}
		seen[key] = i
	}
	if len(errs) > 0 {
		return nil, &InvalidError{Problems: errs}
	}

	type change struct {
		key  string
		p    *v1alpha1.SegmentPolicy
		data []byte
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var todo []change
	for _, p := range ps {
		key := p.Namespace + "/" + p.Name
		np, data, err := exportForm(p)
		if err != nil {
			return nil, fmt.Errorf("apply %s: %w", key, err)
		}
		if e, ok := s.policies[key]; ok && bytes.Equal(e.data, data) {
			continue
		}
		todo = append(todo, change{key, np, data})
	}
	if len(todo) == 0 {
		return nil, nil
	}
	var b batch
	defer b.abort()
	for _, c := range todo {
		if err := b.stage(s.policyPath(c.p.Namespace, c.p.Name), c.data); err != nil {
			return nil, fmt.Errorf("apply %s: %w", c.key, err)
		}
	}
	n, err := b.commit()
	changed := make([]string, 0, n)
	for _, c := range todo[:n] {
		s.policies[c.key] = newEntry(c.p, c.data, s.policies[c.key])
		changed = append(changed, c.key)
	}
	slices.Sort(changed)
	if n > 0 {
		s.notify()
	}
	if err != nil {
		return changed, fmt.Errorf("apply: %w", err)
	}
	return changed, nil
}

// Delete removes a policy. It returns ErrNotFound when there is none.
func (s *Store) Delete(ns, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := ns + "/" + name
	if _, ok := s.policies[key]; !ok {
		return fmt.Errorf("delete %s: %w", key, ErrNotFound)
	}
	path := s.policyPath(ns, name)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	delete(s.policies, key)
	delete(s.act.conditions, key)
	s.notify()
	return nil
}

// SetMode sets the mode of segment ns/name, creating a policy with only
// spec.mode when there is none. An empty mode clears it, so that the
// defaults apply.
func (s *Store) SetMode(ns, name string, m v1alpha1.Mode) error {
	key := ns + "/" + name
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *v1alpha1.SegmentPolicy
	if e, ok := s.policies[key]; ok {
		p = e.p.DeepCopy()
	} else {
		p = newPolicy(ns, name)
	}
	p.Spec.Mode = m
	if err := p.Validate(); err != nil {
		return fmt.Errorf("set mode of %s: %w", key, err)
	}
	if _, err := s.put(key, p); err != nil {
		return fmt.Errorf("set mode of %s: %w", key, err)
	}
	return nil
}

// put stores the already validated p (caller holds mu) unless its export
// form equals the stored one. It reports whether it changed anything.
func (s *Store) put(key string, p *v1alpha1.SegmentPolicy) (bool, error) {
	np, data, err := exportForm(p)
	if err != nil {
		return false, err
	}
	old := s.policies[key]
	if old != nil && bytes.Equal(old.data, data) {
		return false, nil
	}
	if err := writeAtomic(s.policyPath(np.Namespace, np.Name), data); err != nil {
		return false, err
	}
	s.policies[key] = newEntry(np, data, old)
	s.notify()
	return true, nil
}

func newPolicy(ns, name string) *v1alpha1.SegmentPolicy {
	return &v1alpha1.SegmentPolicy{
		TypeMeta:   v1alpha1.TypeMetaSegmentPolicy(),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
	}
}

// RecordHits adds rule hits to the status of their policies. Hits of
// policies or rules the store does not hold are dropped. Status only: no
// file is written and Changes does not signal.
func (s *Store) RecordHits(hits []Hit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hits {
		e, ok := s.policies[h.SegmentKey]
		if !ok || h.Count <= 0 {
			continue
		}
		name := strings.TrimPrefix(h.Rule, h.SegmentKey+"/")
		if !e.rules[name] {
			continue
		}
		rs := e.hits[name]
		rs.Name = name
		rs.Hits += h.Count
		if !h.Last.IsZero() && (rs.LastHit == nil || h.Last.After(rs.LastHit.Time)) {
			rs.LastHit = &metav1.Time{Time: h.Last.UTC()}
		}
		e.hits[name] = rs
	}
}

// RecordViolations adds n violations to segment segmentKey
// ("namespace/name"), whether or not it has a policy. At most
// MaxViolationKeys segments are counted. Status only.
func (s *Store) RecordViolations(segmentKey string, n int64) {
	if n <= 0 || strings.Count(segmentKey, "/") != 1 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.violations[segmentKey]; !ok && len(s.violations) >= MaxViolationKeys {
		return
	}
	s.violations[segmentKey] += n
}

// Violations returns the violations counted for segment segmentKey, which
// need not have a policy.
func (s *Store) Violations(segmentKey string) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.violations[segmentKey]
}

func checkMode(m v1alpha1.Mode) error {
	switch m {
	case "", v1alpha1.ModeDiscover, v1alpha1.ModeMonitor, v1alpha1.ModeProtect:
		return nil
	}
	return fmt.Errorf("unknown mode %q (want discover, monitor or protect)", m)
}

func checkNamespace(ns string) error {
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return fmt.Errorf("namespace %q is not a DNS label", ns)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
