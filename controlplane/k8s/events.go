package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
)

// Event reasons and the component Events are reported by.
const (
	ReasonViolation = "PolicyViolation" // allowed, but no rule allows it (monitor)
	ReasonDenied    = "PolicyDenied"    // blocked (protect)
	EventComponent  = "bulkhead-controlplane"
)

// Bounds of the Events' pre-filter.
const (
	// DefaultEventInterval is how often one segment+peer+reason is passed
	// on to the Event recorder at most.
	DefaultEventInterval = 10 * time.Second
	// MaxEventKeys bounds the keys the pre-filter remembers; when full it
	// starts over.
	MaxEventKeys = 10000
	maxEventText = 256
)

// Violation is one violation to report as Events: on the judging pod (the
// destination's for ingress, the source's for egress) and on the policy of
// its segment.
type Violation struct {
	// Segment is the judging segment, "namespace/name"; its policy has the
	// same name.
	Segment string
	// PodIP is the judging workload's address.
	PodIP netip.Addr
	// Egress is true for an outbound message (judged at the source).
	Egress bool
	// Peer names the other side: its segment key, else its address.
	Peer string
	// Port and Protocol of the destination.
	Port     uint32
	Protocol string
	// Reason is why no rule allowed it (the proxy's words).
	Reason string
	// Denied is true when the message was blocked (protect).
	Denied bool
}

// EventsOptions tune Events; the zero value takes the defaults.
type EventsOptions struct {
	// Interval: DefaultEventInterval. Negative: no pre-filter (tests).
	Interval time.Duration
}

// Events turns violations into Kubernetes Events through client-go's
// EventBroadcaster, whose correlator merges repeats of one Event into one
// object with a count and rate-limits per object; before it, a pre-filter
// passes one segment+peer+reason at most once per Interval, so a flood of
// flow reports costs no pod lookups. Events go to the API server on the
// broadcaster's goroutine; Violation never blocks on the network.
type Events struct {
	log      *slog.Logger
	cluster  *Cluster
	cs       kubernetes.Interface
	interval time.Duration

	mu   sync.Mutex
	last map[string]time.Time

	bc  record.EventBroadcaster
	rec record.EventRecorder
}

// NewEvents returns Events about objects cluster reads, written through
// cfg. It starts nothing: Start does.
func NewEvents(cfg *rest.Config, cluster *Cluster, log *slog.Logger, opts EventsOptions) (*Events, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultEventInterval
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return &Events{log: log, cluster: cluster, cs: cs, interval: opts.Interval, last: make(map[string]time.Time)}, nil
}

// Start sends Events to the API server until ctx is done.
func (e *Events) Start(ctx context.Context) error {
	scheme, err := Scheme()
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	bc := record.NewBroadcaster(record.WithContext(ctx))
	w := bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: e.cs.CoreV1().Events("")})
	e.mu.Lock()
	e.bc, e.rec = bc, bc.NewRecorder(scheme, corev1.EventSource{Component: EventComponent})
	e.mu.Unlock()
	<-ctx.Done()
	e.mu.Lock()
	e.rec = nil
	e.mu.Unlock()
	w.Stop()
	bc.Shutdown()
	return nil
}

// Violation reports v as an Event on its pod and on its policy (each when
// it exists), unless the pre-filter passed the same segment+peer+reason
// within Interval or Start is not running.
func (e *Events) Violation(ctx context.Context, v Violation) {
	ns, name, ok := strings.Cut(v.Segment, "/")
	if !ok {
		return
	}
	verdict, reason, typ := "violation", ReasonViolation, corev1.EventTypeWarning
	if v.Denied {
		verdict, reason = "denied", ReasonDenied
	}
	key := v.Segment + "\x00" + v.Peer + "\x00" + reason + "\x00" + v.Reason
	now := time.Now()
	e.mu.Lock()
	rec := e.rec
	if rec == nil {
		e.mu.Unlock()
		return
	}
	if e.interval > 0 {
		if t, seen := e.last[key]; seen && now.Sub(t) < e.interval {
			e.mu.Unlock()
			return
		}
		if len(e.last) >= MaxEventKeys {
			clear(e.last)
		}
		e.last[key] = now
	}
	e.mu.Unlock()

	dir, from, to := "ingress", clip(v.Peer), v.Segment
	if v.Egress {
		dir, from, to = "egress", v.Segment, clip(v.Peer)
	}
	// The message is the same for every repeat, so that the correlator
	// counts repeats on one Event.
	msg := fmt.Sprintf("%s %s from %s to %s port %d/%s: %s", dir, verdict, from, to, v.Port, clip(v.Protocol), clip(v.Reason))
	if v.PodIP.IsValid() {
		pod, found, err := e.cluster.PodByIP(ctx, v.PodIP)
		if err != nil {
			e.log.Debug("k8s: event: pod lookup", "error", err)
		} else if found {
			rec.Event(&corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}, typ, reason, msg)
		}
	}
	if p, found, err := e.cluster.Get(ctx, ns, name); err == nil && found {
		rec.Event(&corev1.ObjectReference{Kind: v1alpha1.KindSegmentPolicy, APIVersion: v1alpha1.GroupVersion.String(),
			Namespace: ns, Name: name, UID: p.UID}, typ, reason, msg)
	}
}

func clip(s string) string {
	if len(s) > maxEventText {
		return s[:maxEventText]
	}
	return s
}
