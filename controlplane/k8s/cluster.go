package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Field managers of Bulkhead's writes (server-side apply).
const (
	// FieldManagerLearner owns the learned rules (MergeLearned).
	FieldManagerLearner = "bulkhead-learner"
	// FieldManager owns what the control plane applies for people
	// (Apply: the admin API, the CLI).
	FieldManager = "bulkhead"
	// FieldManagerMode owns spec.mode when set through SetMode.
	FieldManagerMode = "bulkhead-mode"
)

// Options configure a Cluster. The zero value is usable.
type Options struct {
	// DefaultMode is the cluster's default mode (empty: discover).
	DefaultMode v1alpha1.Mode
}

// Cluster is the control plane's view of a Kubernetes cluster: the
// workloads (identity, from Pods, ReplicaSets, Jobs and Services), the
// default modes (from Namespaces) and the SegmentPolicy objects, read from
// informers; and the writes to SegmentPolicy objects, made with server-side
// apply. It offers the operations the control plane uses from
// controlplane/store, so that controlplane/compile is fed the same way in
// a cluster and standalone.
//
// Reads before Start has synced the informers see nothing; use
// WaitForSync.
type Cluster struct {
	log     *slog.Logger
	opts    Options
	cache   cache.Cache
	client  client.Client // uncached: writes and fresh reads
	changes chan struct{}

	learnMu sync.Mutex // one MergeLearned at a time
}

// Scheme returns a scheme with the Kubernetes types and Bulkhead's.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	return s, nil
}

// New returns a Cluster reaching the API server with cfg. It starts
// nothing: Start runs the informers.
func New(cfg *rest.Config, log *slog.Logger, opts Options) (*Cluster, error) {
	if opts.DefaultMode != "" && !validMode(opts.DefaultMode) {
		return nil, fmt.Errorf("cluster: default mode %q is not discover, monitor or protect", opts.DefaultMode)
	}
	scheme, err := Scheme()
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("cluster: cache: %w", err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("cluster: client: %w", err)
	}
	return &Cluster{log: log, opts: opts, cache: c, client: cl, changes: make(chan struct{}, 1)}, nil
}

// watched are the kinds the Cluster reads.
func watched() []client.Object {
	return []client.Object{&corev1.Pod{}, &appsv1.ReplicaSet{}, &batchv1.Job{}, &corev1.Service{}, &corev1.Namespace{}, &v1alpha1.SegmentPolicy{}, &v1alpha1.ClusterSegmentPolicy{}}
}

// Start runs the informers until ctx is done. Every add, update and delete
// of a watched object signals Changes.
func (c *Cluster) Start(ctx context.Context) error {
	h := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.notify() },
		UpdateFunc: func(any, any) { c.notify() },
		DeleteFunc: func(any) { c.notify() },
	}
	for _, o := range watched() {
		inf, err := c.cache.GetInformer(ctx, o, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("cluster: informer for %T: %w", o, err)
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("cluster: event handler for %T: %w", o, err)
		}
	}
	if err := c.cache.Start(ctx); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// WaitForSync blocks until the informers hold the objects listed at start,
// or ctx is done (false).
func (c *Cluster) WaitForSync(ctx context.Context) bool { return c.cache.WaitForCacheSync(ctx) }

func (c *Cluster) notify() {
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

// Changes returns a channel (capacity 1, coalesced) that receives after a
// watched object changed: a workload, a default mode or a policy may have.
func (c *Cluster) Changes() <-chan struct{} { return c.changes }

// Workloads returns the cluster's workloads as controlplane/identity
// describes them, sorted by namespace and name: one per Deployment,
// StatefulSet, DaemonSet, CronJob, Job, ReplicaSet without a Deployment or
// bare pod (named by its app label), holding the IPs of its running pods.
// The caller owns the result.
func (c *Cluster) Workloads(ctx context.Context) ([]identity.Workload, error) {
	var (
		pods  corev1.PodList
		rss   appsv1.ReplicaSetList
		jobs  batchv1.JobList
		svcs  corev1.ServiceList
		facts = facts{replicaSets: map[string]*appsv1.ReplicaSet{}, jobs: map[string]*batchv1.Job{}}
	)
	for _, l := range []client.ObjectList{&pods, &rss, &jobs, &svcs} {
		if err := c.cache.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("workloads: %w", err)
		}
	}
	for i := range pods.Items {
		facts.pods = append(facts.pods, &pods.Items[i])
	}
	for i := range rss.Items {
		facts.replicaSets[rss.Items[i].Namespace+"/"+rss.Items[i].Name] = &rss.Items[i]
	}
	for i := range jobs.Items {
		facts.jobs[jobs.Items[i].Namespace+"/"+jobs.Items[i].Name] = &jobs.Items[i]
	}
	for i := range svcs.Items {
		facts.services = append(facts.services, &svcs.Items[i])
	}
	slices.SortFunc(facts.services, func(a, b *corev1.Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	// workloads copies what it keeps of the cache's shared objects.
	return workloads(facts), nil
}

// Settings returns the default modes: Options.DefaultMode and, per
// namespace, the bulkhead.io/mode label of the Namespace (a value that is
// not a mode is ignored and logged).
func (c *Cluster) Settings(ctx context.Context) (store.Settings, error) {
	var nss corev1.NamespaceList
	if err := c.cache.List(ctx, &nss); err != nil {
		return store.Settings{}, fmt.Errorf("settings: %w", err)
	}
	s := store.Settings{DefaultMode: c.opts.DefaultMode}
	for _, ns := range nss.Items {
		v, ok := ns.Labels[LabelMode]
		if !ok {
			continue
		}
		if !validMode(v1alpha1.Mode(v)) {
			c.log.Warn("k8s: namespace mode label is not a mode", "namespace", ns.Name, "label", LabelMode, "value", v)
			continue
		}
		if s.NamespaceModes == nil {
			s.NamespaceModes = map[string]v1alpha1.Mode{}
		}
		s.NamespaceModes[ns.Name] = v1alpha1.Mode(v)
	}
	return s, nil
}

func validMode(m v1alpha1.Mode) bool {
	switch m {
	case v1alpha1.ModeDiscover, v1alpha1.ModeMonitor, v1alpha1.ModeProtect:
		return true
	}
	return false
}

var errNoPolicy = errors.New("no policy")
