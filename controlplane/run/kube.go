package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/bulkhead-io/bulkhead/controlplane/admin"
	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/k8s"
	"github.com/bulkhead-io/bulkhead/controlplane/learn"
	"github.com/bulkhead-io/bulkhead/controlplane/promote"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	"github.com/bulkhead-io/bulkhead/controlplane/xds"
)

// KubeConfig runs the control plane in a Kubernetes cluster (kube mode):
// policies are the SegmentPolicy objects, default modes the Namespaces'
// labels and workloads the Pods (controlplane/k8s) instead of the state
// folder and the workloads file. Rule hits, violations and activity stay in
// memory; a Lease-elected leader writes learned rules, status, Events and
// the policies of new segments of managed namespaces.
type KubeConfig struct {
	// Rest reaches the API server (a kubeconfig or rest.InClusterConfig).
	Rest *rest.Config
	// Namespace holds the Lease: the control plane's own namespace.
	// Empty: the pod's namespace file, else "bulkhead-system".
	Namespace string
	// Identity names this replica in the Lease. Empty: the host name.
	Identity string
	// LeaseDuration, RenewDeadline, RetryPeriod tune the election (zero:
	// k8s.DefaultLeaseDuration…); KeepLeaseOnStop keeps the Lease when Run
	// stops (see k8s.ElectorOptions).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	KeepLeaseOnStop                           bool
	// StatusInterval is the least time between two status writes of one
	// policy. Zero: 5s.
	StatusInterval time.Duration
	// EventInterval is how often one segment+peer+reason becomes an Event
	// at most. Zero: k8s.DefaultEventInterval; negative: every time.
	EventInterval time.Duration
}

// Bounds of what kube mode keeps in memory.
const (
	// maxPendingRules bounds the learned rules a follower holds until it
	// leads.
	maxPendingRules = 10000
	kubeTimeout     = 10 * time.Second
	statusTick      = time.Second
)

// source is what the control plane reads policies and settings from and
// writes them to: *store.Store standalone, *clusterStore in a cluster.
type source interface {
	admin.Store
	learn.Store
	promote.Store
	flows.HitRecorder
	Changes() <-chan struct{}
}

var (
	_ source = (*store.Store)(nil)
	_ source = (*clusterStore)(nil)
)

// workloadSource lists the workloads to compile: the workloads file's
// table standalone, the cluster's pods in kube mode.
type workloadSource interface {
	Workloads() []identity.Workload
}

// kube is kube mode's part of Run: the cluster (informers), the election,
// the Events, status write-back and policy creation.
type kube struct {
	cfg    KubeConfig
	log    *slog.Logger
	cl     *k8s.Cluster
	el     *k8s.Elector
	events *k8s.Events
	src    *clusterStore
	// caBundle, in TLS mode, returns the CA bundle published for the
	// injected proxies (capublish.go); caDone is what was published.
	caBundle func() []byte
	caDone   map[string]caPublished
}

// openSource opens the store folder standalone, or the cluster in kube
// mode (then kube is not nil).
func openSource(cfg *Config, log *slog.Logger) (source, *kube, error) {
	if cfg.Kube == nil {
		st, err := store.Open(cfg.StateDir, log.With("component", "store"))
		if err != nil {
			return nil, nil, fmt.Errorf("run: %w", err)
		}
		if cfg.DefaultMode != "" {
			if err := st.SetDefaultMode(cfg.DefaultMode); err != nil {
				return nil, nil, fmt.Errorf("run: %w", err)
			}
		}
		return st, nil, nil
	}
	k, err := newKube(cfg, log)
	if err != nil {
		return nil, nil, fmt.Errorf("run: %w", err)
	}
	return k.src, k, nil
}

func newKube(cfg *Config, log *slog.Logger) (*kube, error) {
	kc := *cfg.Kube
	if kc.Rest == nil {
		return nil, errors.New("kube: no API server configuration")
	}
	if kc.Namespace == "" {
		kc.Namespace = "bulkhead-system"
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
			kc.Namespace = strings.TrimSpace(string(b))
		}
	}
	if kc.Identity == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("kube: identity: %w", err)
		}
		kc.Identity = h
	}
	if kc.StatusInterval <= 0 {
		kc.StatusInterval = 5 * time.Second
	}
	if cfg.StateDir == "" {
		// Only local caches (the flow history) live there: nothing in a
		// cluster is kept outside the API server.
		cfg.StateDir = filepath.Join(os.TempDir(), "bulkhead-"+kc.Identity)
	}
	klog := log.With("component", "k8s")
	cl, err := k8s.New(kc.Rest, klog, k8s.Options{DefaultMode: cfg.DefaultMode})
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	el, err := k8s.NewElector(kc.Rest, klog, k8s.ElectorOptions{
		Namespace: kc.Namespace, Identity: kc.Identity,
		LeaseDuration: kc.LeaseDuration, RenewDeadline: kc.RenewDeadline, RetryPeriod: kc.RetryPeriod,
		KeepLeaseOnStop: kc.KeepLeaseOnStop,
	})
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	ev, err := k8s.NewEvents(kc.Rest, cl, klog, k8s.EventsOptions{Interval: kc.EventInterval})
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	return &kube{cfg: kc, log: klog, cl: cl, el: el, events: ev, src: newClusterStore(cl, el, klog)}, nil
}

// Start runs the cluster's informers, the election and the Events until
// ctx is done. Once the informers hold the cluster's objects it signals
// the compiler (nothing is compiled before: a half-read cluster would push
// policies without their rules); then, while this replica leads, it writes
// the learned rules it kept as a follower, status every second (each
// policy at most once per StatusInterval, and only when changed) and the
// policies of new segments of managed namespaces.
func (k *kube) Start(ctx context.Context, c *compiler, nodes func() []xds.NodeStatus) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return k.cl.Start(gctx) })
	g.Go(func() error { return k.el.Start(gctx) })
	g.Go(func() error { return k.events.Start(gctx) })
	g.Go(func() error { return k.loop(gctx, c, nodes) })
	return g.Wait()
}

func (k *kube) loop(ctx context.Context, c *compiler, nodes func() []xds.NodeStatus) error {
	if !k.cl.WaitForSync(ctx) {
		return nil // ctx done (an informer error ends Start's group)
	}
	k.log.Info("cluster read", "identity", k.cfg.Identity)
	k.src.synced.Store(true)
	k.src.notify()
	ticker := time.NewTicker(statusTick)
	defer ticker.Stop()
	written := make(map[string]time.Time) // last status write, by policy key
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-k.cl.Changes():
			k.src.notify()
		case <-k.el.Changes():
			if k.el.IsLeader() {
				if ps, err := k.cl.List(ctx); err == nil {
					k.src.seed(ps)
				}
				k.src.flushPending(ctx)
				clear(written)
			}
		case <-ticker.C:
			if !k.el.IsLeader() {
				continue
			}
			k.src.flushPending(ctx)
			k.createPolicies(ctx, c)
			k.writeStatus(ctx, c, nodes, written)
			k.publishCA(ctx, time.Now())
		}
	}
}

// createPolicies creates a policy, in the namespace's default mode, for
// each segment of the latest compilation in a managed namespace that has
// none.
func (k *kube) createPolicies(ctx context.Context, c *compiler) {
	out := c.latest.Load()
	if out == nil {
		return
	}
	managed, err := k.cl.ManagedNamespaces(ctx)
	if err != nil || len(managed) == 0 {
		return
	}
	settings := k.src.Settings()
	for _, s := range out.Segments {
		if !managed[s.Namespace] || len(s.Workloads) == 0 {
			continue
		}
		if _, ok := k.src.Get(s.Namespace, s.Name); ok {
			continue
		}
		if !k.el.IsLeader() {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, kubeTimeout)
		created, err := k.cl.CreatePolicy(cctx, s.Namespace, s.Name, settings.Mode(s.Namespace))
		cancel()
		if err != nil {
			k.log.Warn("policy of a new segment not created", "segment", s.Key(), "error", err)
		} else if created {
			k.log.Info("policy created for a new segment", "segment", s.Key(), "mode", settings.Mode(s.Namespace))
		}
	}
}

// writeStatus writes the status of each policy whose status changed, at
// most once per StatusInterval each.
func (k *kube) writeStatus(ctx context.Context, c *compiler, nodes func() []xds.NodeStatus, written map[string]time.Time) {
	ps, err := k.cl.List(ctx)
	if err != nil {
		return
	}
	// Proxies by segment key: connected ones, and those that acknowledged
	// the last ProxyPolicy sent to them (the server pushes every new
	// revision at once, so an acknowledged last push is the current one).
	proxies, current := map[string]int32{}, map[string]int32{}
	var compileErr string
	if e := c.lastErr.Load(); e != nil {
		compileErr = (*e).Error()
	}
	if out := c.latest.Load(); out != nil {
		for _, n := range nodes() {
			p, ok := out.Proxies[n.Node]
			if !ok || !n.Connected {
				continue
			}
			key := p.GetNamespace() + "/" + p.GetSegment()
			proxies[key]++
			for _, t := range n.Types {
				if t.Type == xds.TypeProxyPolicy && t.SentVersion != "" && t.AckedVersion == t.SentVersion {
					current[key]++
				}
			}
		}
	}
	now := time.Now()
	live := make(map[string]bool, len(ps))
	for _, p := range ps {
		key := p.Namespace + "/" + p.Name
		live[key] = true
		if t, ok := written[key]; ok && now.Sub(t) < k.cfg.StatusInterval {
			continue
		}
		want := k.src.status(key, p)
		want.Proxies, want.ProxiesCurrent = proxies[key], current[key]
		cond := metav1.Condition{Type: "Compiled", Status: metav1.ConditionTrue, Reason: "Compiled",
			Message: "the policy is compiled and served", ObservedGeneration: p.Generation}
		if err := p.Validate(); err != nil {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Invalid", clipMsg(err.Error())
		} else if compileErr != "" && strings.Contains(compileErr, key) {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "CompileError", clipMsg(compileErr)
		}
		want.Conditions = slices.Clone(p.Status.Conditions)
		for _, c := range k.src.conditions(key) {
			meta.SetStatusCondition(&want.Conditions, c)
		}
		meta.SetStatusCondition(&want.Conditions, cond)
		if equality.Semantic.DeepEqual(want, p.Status) {
			continue
		}
		if !k.el.IsLeader() {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, kubeTimeout)
		err := k.cl.UpdateStatus(cctx, p.Namespace, p.Name, want)
		cancel()
		if err != nil {
			k.log.Warn("status not written", "policy", key, "error", err)
			continue
		}
		written[key] = now
	}
	k.writeClusterStatus(ctx, c, written, live, now)
	for key := range written {
		if !live[key] {
			delete(written, key)
		}
	}
}

// writeClusterStatus writes the status of the cluster policies: rule
// counts, the segments whose compiled policy holds their rules, and a
// Compiled condition (False when invalid or left out of a segment). Keys
// in written and live are "\x00" + name.
func (k *kube) writeClusterStatus(ctx context.Context, c *compiler, written map[string]time.Time, live map[string]bool, now time.Time) {
	cps, err := k.cl.ClusterPolicies(ctx)
	if err != nil || len(cps) == 0 {
		return
	}
	segments := map[string]map[string]bool{} // by cluster policy name
	if out := c.latest.Load(); out != nil {
		for _, pp := range out.Proxies {
			seg := pp.GetNamespace() + "/" + pp.GetSegment()
			for _, rules := range [][]*bulkheadv1.Rule{pp.GetIngress(), pp.GetEgress()} {
				for _, r := range rules {
					rest, ok := strings.CutPrefix(r.GetName(), seg+"/"+v1alpha1.ClusterRulePrefix)
					if !ok {
						continue
					}
					name, _, _ := strings.Cut(rest, ".")
					if segments[name] == nil {
						segments[name] = map[string]bool{}
					}
					segments[name][seg] = true
				}
			}
		}
	}
	var leftOut string
	if e := k.src.clusterErr.Load(); e != nil {
		leftOut = *e
	}
	for _, cp := range cps {
		key := "\x00" + cp.Name
		live[key] = true
		if t, ok := written[key]; ok && now.Sub(t) < k.cfg.StatusInterval {
			continue
		}
		want := v1alpha1.ClusterSegmentPolicyStatus{
			IngressRules: int32(len(cp.Spec.Ingress)), EgressRules: int32(len(cp.Spec.Egress)),
			Segments: int32(len(segments[cp.Name])), Conditions: slices.Clone(cp.Status.Conditions),
		}
		cond := metav1.Condition{Type: "Compiled", Status: metav1.ConditionTrue, Reason: "Compiled",
			Message: "the rules are compiled into the selected segments", ObservedGeneration: cp.Generation}
		if err := cp.Validate(); err != nil {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Invalid", clipMsg(err.Error())
		} else if mine := linesAbout(leftOut, "cluster policy "+cp.Name+" "); mine != "" {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "LeftOut", clipMsg(mine)
		}
		meta.SetStatusCondition(&want.Conditions, cond)
		if equality.Semantic.DeepEqual(want, cp.Status) {
			continue
		}
		if !k.el.IsLeader() {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, kubeTimeout)
		err := k.cl.UpdateClusterStatus(cctx, cp.Name, want)
		cancel()
		if err != nil {
			k.log.Warn("status not written", "clusterPolicy", cp.Name, "error", err)
			continue
		}
		written[key] = now
	}
}

// linesAbout returns the lines of a joined error that start with prefix.
func linesAbout(err, prefix string) string {
	var out []string
	for _, l := range strings.Split(err, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

func clipMsg(s string) string {
	const max = 1024
	if len(s) > max {
		return s[:max]
	}
	return s
}

// Add turns the violations of a batch of flows into Events (flows.Sink),
// while this replica leads. Discover mode's violations (every flow not
// yet learned) are not reported.
func (k *kube) Add(_ string, fs []*bulkheadv1.Flow) {
	if !k.el.IsLeader() {
		return
	}
	for _, f := range fs {
		v := f.GetVerdict()
		if (v != bulkheadv1.Verdict_VERDICT_VIOLATION && v != bulkheadv1.Verdict_VERDICT_DENY) || f.GetMode() == bulkheadv1.Mode_MODE_DISCOVER {
			continue
		}
		ev := k8s.Violation{Port: f.GetDstPort(), Protocol: f.GetProtocol(), Reason: f.GetReason(), Denied: v == bulkheadv1.Verdict_VERDICT_DENY}
		var podIP, peer, peerIP string
		if f.GetDirection() == bulkheadv1.Direction_DIRECTION_EGRESS {
			ev.Egress = true
			ev.Segment, podIP, peer, peerIP = f.GetSrcSegment(), f.GetSrcIp(), f.GetDstSegment(), f.GetDstIp()
		} else {
			ev.Segment, podIP, peer, peerIP = f.GetDstSegment(), f.GetDstIp(), f.GetSrcSegment(), f.GetSrcIp()
		}
		if peer == "" {
			peer = peerIP
		}
		ev.Peer = peer
		ev.PodIP, _ = netip.ParseAddr(podIP)
		ctx, cancel := context.WithTimeout(context.Background(), kubeTimeout)
		k.events.Violation(ctx, ev)
		cancel()
	}
}

var _ flows.Sink = (*kube)(nil)

// clusterStore offers the store's operations over a *k8s.Cluster: reads
// from the informers, writes to the API server, status in memory (hits,
// violations, activity, conditions) as the store keeps them. Learned rules
// are written while this replica leads; a follower keeps them (bounded)
// and writes them once it leads (learning is idempotent).
type clusterStore struct {
	cl      *k8s.Cluster
	el      *k8s.Elector
	log     *slog.Logger
	changes chan struct{}
	synced  atomic.Bool

	mu         sync.Mutex
	hits       map[string]map[string]v1alpha1.RuleStatus // by policy key, rule name
	violations map[string]int64
	learned    map[string]int64
	conds      map[string][]metav1.Condition
	pending    map[pendingKey][]v1alpha1.Rule
	pendingSet map[string]bool // keys of pending rules, deduplicated
	lastList   []*v1alpha1.SegmentPolicy
	lastSet    store.Settings
	clusterErr atomic.Pointer[string] // cluster policies left out at the last compilation
}

type pendingKey struct {
	ns, name string
	dir      store.Direction
}

func newClusterStore(cl *k8s.Cluster, el *k8s.Elector, log *slog.Logger) *clusterStore {
	return &clusterStore{
		cl: cl, el: el, log: log, changes: make(chan struct{}, 1),
		hits: map[string]map[string]v1alpha1.RuleStatus{}, violations: map[string]int64{}, learned: map[string]int64{},
		conds: map[string][]metav1.Condition{}, pending: map[pendingKey][]v1alpha1.Rule{}, pendingSet: map[string]bool{},
	}
}

func (s *clusterStore) notify() {
	if !s.synced.Load() {
		return
	}
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Changes receives after a watched object changed, once the informers
// synced.
func (s *clusterStore) Changes() <-chan struct{} { return s.changes }

func timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), kubeTimeout)
}

// List returns the policies with their in-memory status. A failed read
// (the informers stopping) returns the last good list.
func (s *clusterStore) List() []*v1alpha1.SegmentPolicy {
	ctx, cancel := timeout()
	defer cancel()
	ps, err := s.cl.List(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.log.Warn("policies unreadable; using the last ones", "error", err)
		ps = make([]*v1alpha1.SegmentPolicy, len(s.lastList))
		for i, p := range s.lastList {
			ps[i] = p.DeepCopy()
		}
	} else {
		s.lastList = make([]*v1alpha1.SegmentPolicy, len(ps))
		for i, p := range ps {
			s.lastList[i] = p.DeepCopy()
		}
	}
	for _, p := range ps {
		p.Status = s.statusLocked(p.Namespace+"/"+p.Name, p)
	}
	return ps
}

// Get returns one policy with its in-memory status.
func (s *clusterStore) Get(ns, name string) (*v1alpha1.SegmentPolicy, bool) {
	ctx, cancel := timeout()
	defer cancel()
	p, ok, err := s.cl.Get(ctx, ns, name)
	if err != nil || !ok {
		return nil, false
	}
	p.Status = s.status(ns+"/"+name, p)
	return p, true
}

// status is what the control plane knows of policy key: counts of p's
// rules, hits, violations and the conditions set through SetCondition.
func (s *clusterStore) status(key string, p *v1alpha1.SegmentPolicy) v1alpha1.SegmentPolicyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked(key, p)
}

func (s *clusterStore) statusLocked(key string, p *v1alpha1.SegmentPolicy) v1alpha1.SegmentPolicyStatus {
	var st v1alpha1.SegmentPolicyStatus
	st.IngressRules = int32(len(p.Spec.Ingress))
	st.RuleCount = int32(len(p.Spec.Ingress) + len(p.Spec.Egress))
	names := map[string]bool{}
	for _, rules := range [][]v1alpha1.Rule{p.Spec.Ingress, p.Spec.Egress} {
		for _, r := range rules {
			names[r.Name] = true
			if r.Origin == v1alpha1.OriginLearned {
				st.LearnedRules++
			}
		}
	}
	st.Violations = s.violations[key]
	for _, c := range s.conds[key] {
		st.Conditions = append(st.Conditions, *c.DeepCopy())
	}
	hits := s.hits[key]
	for _, name := range sortedNames(hits) {
		if names[name] {
			h := hits[name]
			st.Rules = append(st.Rules, *h.DeepCopy())
		}
	}
	return st
}

func (s *clusterStore) conditions(key string) []metav1.Condition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.conds[key])
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Export returns the namespace's policies in export form.
func (s *clusterStore) Export(ns string) ([]byte, error) {
	ctx, cancel := timeout()
	defer cancel()
	return s.cl.Export(ctx, ns)
}

// Apply applies policies for a person (the admin API, the CLI) with
// server-side apply; any replica may.
func (s *clusterStore) Apply(ps []*v1alpha1.SegmentPolicy) ([]string, error) {
	ctx, cancel := timeout()
	defer cancel()
	return s.cl.Apply(ctx, ps)
}

// SetMode sets a segment's mode with server-side apply.
func (s *clusterStore) SetMode(ns, name string, m v1alpha1.Mode) error {
	ctx, cancel := timeout()
	defer cancel()
	return s.cl.SetMode(ctx, ns, name, m)
}

// SetNamespaceMode sets the namespace's mode label.
func (s *clusterStore) SetNamespaceMode(ns string, m v1alpha1.Mode) error {
	ctx, cancel := timeout()
	defer cancel()
	return s.cl.SetNamespaceMode(ctx, ns, m)
}

// Settings returns the default modes; a failed read the last good ones.
func (s *clusterStore) Settings() store.Settings {
	ctx, cancel := timeout()
	defer cancel()
	st, err := s.cl.Settings(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.log.Warn("settings unreadable; using the last ones", "error", err)
		st = s.lastSet
	}
	s.lastSet = st
	out := st
	out.NamespaceModes = nil
	for ns, m := range st.NamespaceModes {
		if out.NamespaceModes == nil {
			out.NamespaceModes = make(map[string]v1alpha1.Mode, len(st.NamespaceModes))
		}
		out.NamespaceModes[ns] = m
	}
	return out
}

// EffectiveMode is the policy's mode, else the defaults'.
func (s *clusterStore) EffectiveMode(ns, name string) v1alpha1.Mode {
	ctx, cancel := timeout()
	defer cancel()
	if p, ok, err := s.cl.Get(ctx, ns, name); err == nil && ok && p.Spec.Mode != "" {
		return p.Spec.Mode
	}
	return s.Settings().Mode(ns)
}

// MergeLearned writes learned rules (server-side apply under the learner's
// field manager) while this replica leads; a follower keeps them until it
// leads and reports no change.
func (s *clusterStore) MergeLearned(ns, name string, dir store.Direction, rules []v1alpha1.Rule) (bool, error) {
	if len(rules) == 0 {
		return false, nil
	}
	if !s.el.IsLeader() {
		s.keep(pendingKey{ns, name, dir}, rules)
		return false, nil
	}
	ctx, cancel := timeout()
	defer cancel()
	changed, err := s.cl.MergeLearned(ctx, ns, name, dir, rules)
	if changed {
		s.mu.Lock()
		if _, ok := s.learned[ns+"/"+name]; ok || len(s.learned) < store.MaxViolationKeys {
			s.learned[ns+"/"+name]++
		}
		s.mu.Unlock()
	}
	return changed, err
}

// keep holds learned rules for later, each distinct rule once, at most
// maxPendingRules.
func (s *clusterStore) keep(k pendingKey, rules []v1alpha1.Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rules {
		b, err := json.Marshal(r)
		if err != nil {
			continue
		}
		id := fmt.Sprintf("%s/%s/%d/%s", k.ns, k.name, k.dir, b)
		if s.pendingSet[id] {
			continue
		}
		if len(s.pendingSet) >= maxPendingRules {
			s.log.Warn("follower: too many learned rules kept; dropping", "policy", k.ns+"/"+k.name)
			return
		}
		s.pendingSet[id] = true
		s.pending[k] = append(s.pending[k], *r.DeepCopy())
	}
}

// flushPending writes the learned rules kept as a follower.
func (s *clusterStore) flushPending(ctx context.Context) {
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return
	}
	pending := s.pending
	s.pending, s.pendingSet = map[pendingKey][]v1alpha1.Rule{}, map[string]bool{}
	s.mu.Unlock()
	keys := make([]pendingKey, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b pendingKey) int {
		return strings.Compare(fmt.Sprint(a.ns, "/", a.name, "/", a.dir), fmt.Sprint(b.ns, "/", b.name, "/", b.dir))
	})
	for i, k := range keys {
		rules := pending[k]
		slices.SortStableFunc(rules, func(a, b v1alpha1.Rule) int { return strings.Compare(a.Name, b.Name) })
		if !s.el.IsLeader() || ctx.Err() != nil {
			for _, k := range keys[i:] { // keep the rest for the next time
				s.keep(k, pending[k])
			}
			return
		}
		cctx, cancel := context.WithTimeout(ctx, kubeTimeout)
		_, err := s.cl.MergeLearned(cctx, k.ns, k.name, k.dir, rules)
		cancel()
		if err != nil {
			s.log.Warn("learned rules kept as a follower not written", "policy", k.ns+"/"+k.name, "error", err)
			s.keep(k, rules)
		}
	}
}

// seed raises the in-memory counters to the status a previous leader
// wrote, so that the status stays monotonic across a failover.
func (s *clusterStore) seed(ps []*v1alpha1.SegmentPolicy) {
	var hits []store.Hit
	for _, p := range ps {
		key := p.Namespace + "/" + p.Name
		s.mu.Lock()
		if n := p.Status.Violations - s.violations[key]; n > 0 {
			s.mu.Unlock()
			s.RecordViolations(key, n)
			s.mu.Lock()
		}
		for _, r := range p.Status.Rules {
			h := store.Hit{SegmentKey: key, Rule: r.Name, Count: r.Hits - s.hits[key][r.Name].Hits}
			if r.LastHit != nil {
				h.Last = r.LastHit.Time
			}
			if h.Count > 0 {
				hits = append(hits, h)
			}
		}
		s.mu.Unlock()
	}
	s.RecordHits(hits)
}

// RecordHits counts rule hits in memory.
func (s *clusterStore) RecordHits(hits []store.Hit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hits {
		if h.Count <= 0 {
			continue
		}
		m, ok := s.hits[h.SegmentKey]
		if !ok {
			if len(s.hits) >= store.MaxViolationKeys {
				continue
			}
			m = map[string]v1alpha1.RuleStatus{}
			s.hits[h.SegmentKey] = m
		}
		name := strings.TrimPrefix(h.Rule, h.SegmentKey+"/")
		rs, ok := m[name]
		if !ok && len(m) >= 2*v1alpha1.MaxRules {
			continue
		}
		rs.Name = name
		rs.Hits += h.Count
		if !h.Last.IsZero() && (rs.LastHit == nil || h.Last.After(rs.LastHit.Time)) {
			rs.LastHit = &metav1.Time{Time: h.Last.UTC().Truncate(time.Second)}
		}
		m[name] = rs
	}
}

// RecordViolations counts violations in memory.
func (s *clusterStore) RecordViolations(segmentKey string, n int64) {
	if n <= 0 || strings.Count(segmentKey, "/") != 1 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.violations[segmentKey]; !ok && len(s.violations) >= store.MaxViolationKeys {
		return
	}
	s.violations[segmentKey] += n
}

// Violations returns the violations counted for a segment.
func (s *clusterStore) Violations(segmentKey string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.violations[segmentKey]
}

// Activity returns a segment's counters.
func (s *clusterStore) Activity(segmentKey string) store.Activity {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := store.Activity{Learned: s.learned[segmentKey], Violations: s.violations[segmentKey]}
	for _, h := range s.hits[segmentKey] {
		a.Allowed += h.Hits
	}
	return a
}

// SetCondition sets a condition of a policy's status (written back by the
// leader with the rest of the status).
func (s *clusterStore) SetCondition(segmentKey string, c metav1.Condition) bool {
	ns, name, ok := strings.Cut(segmentKey, "/")
	if !ok {
		return false
	}
	if _, ok := s.Get(ns, name); !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	conds := s.conds[segmentKey]
	meta.SetStatusCondition(&conds, c)
	s.conds[segmentKey] = conds
	return true
}

// leaderWrites is the source the promoter uses in kube mode: its
// automatic changes are made by the leader only.
type leaderWrites struct {
	*clusterStore
}

var errNotLeader = errors.New("not the leader: automatic changes are made by the leading replica")

// Apply applies while this replica leads.
func (s leaderWrites) Apply(ps []*v1alpha1.SegmentPolicy) ([]string, error) {
	if !s.el.IsLeader() {
		return nil, errNotLeader
	}
	return s.clusterStore.Apply(ps)
}

// SetMode sets a mode while this replica leads.
func (s leaderWrites) SetMode(ns, name string, m v1alpha1.Mode) error {
	if !s.el.IsLeader() {
		return errNotLeader
	}
	return s.clusterStore.SetMode(ns, name, m)
}

// clusterWorkloads lists the cluster's workloads for the compiler; a
// failed read keeps the last good list.
type clusterWorkloads struct {
	cl   *k8s.Cluster
	log  *slog.Logger
	last []identity.Workload
}

// Workloads returns the cluster's workloads (called by the compiler's
// loop only).
func (w *clusterWorkloads) Workloads() []identity.Workload {
	ctx, cancel := timeout()
	defer cancel()
	ws, err := w.cl.Workloads(ctx)
	if err != nil {
		w.log.Warn("workloads unreadable; using the last ones", "error", err)
		return w.last
	}
	w.last = ws
	return ws
}

// policies are the policies to compile: the source's and, in a cluster,
// with the rules of the ClusterSegmentPolicies added to the segments they
// select (k8s.WithClusterPolicies; a cluster policy that cannot be added
// is left out and logged).
func (c *compiler) policies(workloads []identity.Workload) []*v1alpha1.SegmentPolicy {
	ps := c.st.List()
	cs, ok := c.st.(*clusterStore)
	if !ok {
		return ps
	}
	ctx, cancel := timeout()
	defer cancel()
	cps, err := cs.cl.ClusterPolicies(ctx)
	if err != nil {
		c.log.Warn("cluster policies unreadable; compiling without them", "error", err)
		return ps
	}
	if len(cps) == 0 {
		cs.clusterErr.Store(nil)
		return ps
	}
	nsLabels, err := cs.cl.NamespaceLabels(ctx)
	if err != nil {
		c.log.Warn("namespaces unreadable; compiling without cluster policies", "error", err)
		return ps
	}
	out, err := k8s.WithClusterPolicies(ps, cps, workloads, nsLabels)
	if err != nil {
		c.log.Warn("cluster policies left out", "error", err)
		msg := err.Error()
		cs.clusterErr.Store(&msg)
	} else {
		cs.clusterErr.Store(nil)
	}
	return out
}
