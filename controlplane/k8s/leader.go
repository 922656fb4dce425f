package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Lease defaults (client-go's core clients use the same).
const (
	DefaultLeaseName     = "bulkhead-controlplane"
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// ElectorOptions configure an Elector. Namespace and Identity are
// required; zero durations take the defaults.
type ElectorOptions struct {
	// Namespace and Name of the Lease (coordination.k8s.io/v1). Name
	// empty: DefaultLeaseName.
	Namespace, Name string
	// Identity names this replica in the Lease (the pod's name).
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod as client-go's
	// leaderelection defines them.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// KeepLeaseOnStop keeps the Lease when Start's context ends, so that
	// another replica takes over only after LeaseDuration (a crash). By
	// default the Lease is released and another replica takes over at
	// once.
	KeepLeaseOnStop bool
}

// Elector takes part in the election of the replica that writes (learned
// rules, status, Events, created policies) through a Lease. Every replica
// serves xDS and flow reports; only the leader writes. client-go's election
// has no fencing: a writer checks IsLeader just before each write, and the
// writes are idempotent (server-side apply, status replaced whole), so two
// leaders for an instant change nothing twice.
type Elector struct {
	log     *slog.Logger
	opts    ElectorOptions
	lock    resourcelock.Interface
	leader  atomic.Bool
	changes chan struct{}
}

// NewElector returns an Elector using the API server reached with cfg. It
// starts nothing.
func NewElector(cfg *rest.Config, log *slog.Logger, opts ElectorOptions) (*Elector, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Namespace == "" || opts.Identity == "" {
		return nil, errors.New("elector: namespace and identity are required")
	}
	if opts.Name == "" {
		opts.Name = DefaultLeaseName
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = DefaultLeaseDuration
	}
	if opts.RenewDeadline <= 0 {
		opts.RenewDeadline = DefaultRenewDeadline
	}
	if opts.RetryPeriod <= 0 {
		opts.RetryPeriod = DefaultRetryPeriod
	}
	if opts.RenewDeadline >= opts.LeaseDuration {
		return nil, fmt.Errorf("elector: renew deadline %v must be shorter than the lease duration %v", opts.RenewDeadline, opts.LeaseDuration)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("elector: %w", err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.Namespace, Name: opts.Name},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity},
	}
	return &Elector{log: log, opts: opts, lock: lock, changes: make(chan struct{}, 1)}, nil
}

// IsLeader reports whether this replica holds the Lease.
func (e *Elector) IsLeader() bool { return e.leader.Load() }

// Identity is the name this replica campaigns under.
func (e *Elector) Identity() string { return e.opts.Identity }

// Changes receives (capacity 1, coalesced) after this replica gained or
// lost the Lease.
func (e *Elector) Changes() <-chan struct{} { return e.changes }

func (e *Elector) set(v bool) {
	if e.leader.Swap(v) != v {
		select {
		case e.changes <- struct{}{}:
		default:
		}
	}
}

// Start campaigns until ctx is done: it acquires the Lease when it is free
// or expired, renews it, and campaigns again after losing it.
func (e *Elector) Start(ctx context.Context) error {
	for ctx.Err() == nil {
		// A new elector per campaign: one that lost keeps stale state.
		le, err := e.newLeaderElector()
		if err != nil {
			return err
		}
		le.Run(ctx) // returns when the lease is lost or ctx is done
		e.set(false)
		select {
		case <-ctx.Done():
		case <-time.After(e.opts.RetryPeriod):
		}
	}
	return nil
}

func (e *Elector) newLeaderElector() (*leaderelection.LeaderElector, error) {
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            e.lock,
		Name:            e.opts.Name,
		LeaseDuration:   e.opts.LeaseDuration,
		RenewDeadline:   e.opts.RenewDeadline,
		RetryPeriod:     e.opts.RetryPeriod,
		ReleaseOnCancel: !e.opts.KeepLeaseOnStop,
		Callbacks: leaderelection.LeaderCallbacks{
			// Called on a goroutine of client-go's: it only flips the flag.
			OnStartedLeading: func(context.Context) {
				e.log.Info("k8s: leading", "lease", e.opts.Namespace+"/"+e.opts.Name, "identity", e.opts.Identity)
				e.set(true)
			},
			OnStoppedLeading: func() {
				if e.leader.Load() {
					e.log.Info("k8s: no longer leading", "lease", e.opts.Namespace+"/"+e.opts.Name, "identity", e.opts.Identity)
				}
				e.set(false)
			},
			OnNewLeader: func(id string) {
				e.log.Debug("k8s: leader", "lease", e.opts.Namespace+"/"+e.opts.Name, "leader", id)
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("elector: %w", err)
	}
	return le, nil
}
