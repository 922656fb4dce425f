package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/k8s"
)

// KubeFlags select the cluster mode of the mode and policy commands:
// kubectl's --kubeconfig and --context. With either (or --kube, for
// $KUBECONFIG or ~/.kube/config), those commands read and write
// SegmentPolicy objects and Namespace labels on the API server directly;
// flows, violations and the rest still go to the admin API (--server).
type KubeFlags struct {
	Enabled    bool
	Kubeconfig string
	Context    string
}

func (k *KubeFlags) flags(pf *pflag.FlagSet) {
	pf.BoolVar(&k.Enabled, "kube", false, "mode and policy commands work on SegmentPolicy objects in the cluster ($KUBECONFIG or ~/.kube/config)")
	pf.StringVar(&k.Kubeconfig, "kubeconfig", "", "kubeconfig file (implies --kube)")
	pf.StringVar(&k.Context, "context", "", "kubeconfig context (implies --kube)")
}

// on reports whether cluster mode is selected.
func (k *KubeFlags) on() bool { return k.Enabled || k.Kubeconfig != "" || k.Context != "" }

// RestConfig loads the kubeconfig as kubectl does: --kubeconfig, else
// $KUBECONFIG, else ~/.kube/config; --context, else the current one.
func (k *KubeFlags) RestConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.Context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// PolicyAPI is what the mode and policy commands need: the admin API's
// *Client or, in cluster mode, a *KubeClient.
type PolicyAPI interface {
	Policies(ctx context.Context) ([]v1alpha1.SegmentPolicy, error)
	Export(ctx context.Context, namespace string) ([]byte, error)
	Apply(ctx context.Context, yaml []byte) (ApplyResult, error)
	Segments(ctx context.Context) ([]Segment, error)
	SetMode(ctx context.Context, namespace, name string, m v1alpha1.Mode) error
	SetNamespaceMode(ctx context.Context, namespace string, m v1alpha1.Mode) error
}

var (
	_ PolicyAPI = (*Client)(nil)
	_ PolicyAPI = (*KubeClient)(nil)
)

// Policies returns the PolicyAPI the flags select.
func (g *Globals) Policies() (PolicyAPI, error) {
	if !g.Kube.on() {
		return g.Client()
	}
	cfg, err := g.Kube.RestConfig()
	if err != nil {
		return nil, err
	}
	return NewKubeClient(cfg)
}

// KubeClient works on SegmentPolicy objects and Namespace labels through
// the API server: writes with controlplane/k8s's server-side apply (field
// managers "bulkhead" for apply, "bulkhead-mode" for modes), reads with
// plain list calls.
type KubeClient struct {
	c       client.Client
	cluster *k8s.Cluster
}

// NewKubeClient returns a KubeClient reaching the API server with cfg.
func NewKubeClient(cfg *rest.Config) (*KubeClient, error) {
	scheme, err := k8s.Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	// The Cluster is used for its writes only: its informers never run.
	cl, err := k8s.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), k8s.Options{})
	if err != nil {
		return nil, err
	}
	return &KubeClient{c: c, cluster: cl}, nil
}

// Policies lists every SegmentPolicy, sorted by namespace and name.
func (k *KubeClient) Policies(ctx context.Context) ([]v1alpha1.SegmentPolicy, error) {
	var l v1alpha1.SegmentPolicyList
	if err := k.c.List(ctx, &l); err != nil {
		return nil, fmt.Errorf("list segmentpolicies: %w", err)
	}
	slices.SortFunc(l.Items, func(a, b v1alpha1.SegmentPolicy) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for i := range l.Items {
		l.Items[i].TypeMeta = v1alpha1.TypeMetaSegmentPolicy()
	}
	return l.Items, nil
}

// Export returns the policies of namespace ("" all) in export form, as the
// admin API's export and controlplane/k8s's Export do.
func (k *KubeClient) Export(ctx context.Context, namespace string) ([]byte, error) {
	all, err := k.Policies(ctx)
	if err != nil {
		return nil, err
	}
	var ps []*v1alpha1.SegmentPolicy
	for i := range all {
		if namespace == "" || all[i].Namespace == namespace {
			ps = append(ps, &all[i])
		}
	}
	out, err := v1alpha1.MarshalYAML(ps)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return out, nil
}

// Apply validates every policy of the YAML and applies each with
// server-side apply (k8s.Cluster.Apply): rules other managers own (the
// learner's) stay.
func (k *KubeClient) Apply(ctx context.Context, yaml []byte) (ApplyResult, error) {
	ps, err := v1alpha1.UnmarshalYAML(yaml)
	if err != nil {
		return ApplyResult{}, fmt.Errorf("parse policies: %w", err)
	}
	changed, err := k.cluster.Apply(ctx, ps)
	if err != nil {
		return ApplyResult{}, err
	}
	res := ApplyResult{Changed: changed}
	for _, p := range ps {
		if key := p.Namespace + "/" + p.Name; !slices.Contains(changed, key) {
			res.Unchanged = append(res.Unchanged, key)
		}
	}
	slices.Sort(res.Unchanged)
	return res, nil
}

// Segments lists one row per SegmentPolicy: its mode (else the namespace's
// bulkhead.io/mode label; empty when the control plane's default applies),
// rule counts and the violations its status reports. Workloads are the
// control plane's knowledge: use the admin API for them.
func (k *KubeClient) Segments(ctx context.Context) ([]Segment, error) {
	ps, err := k.Policies(ctx)
	if err != nil {
		return nil, err
	}
	var nss corev1.NamespaceList
	if err := k.c.List(ctx, &nss); err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	nsMode := map[string]v1alpha1.Mode{}
	for _, ns := range nss.Items {
		if m := ns.Labels[k8s.LabelMode]; m != "" {
			nsMode[ns.Name] = v1alpha1.Mode(m)
		}
	}
	out := make([]Segment, 0, len(ps))
	for _, p := range ps {
		s := Segment{Namespace: p.Namespace, Name: p.Name, Mode: p.Spec.Mode, Violations: p.Status.Violations}
		if s.Mode == "" {
			s.Mode = nsMode[p.Namespace]
		}
		for _, rs := range [][]v1alpha1.Rule{p.Spec.Ingress, p.Spec.Egress} {
			for _, r := range rs {
				s.Rules++
				if r.Origin == v1alpha1.OriginLearned {
					s.Learned++
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// SetMode sets spec.mode of policy namespace/name (k8s.Cluster.SetMode:
// server-side apply, creating the policy; "" removes the mode).
func (k *KubeClient) SetMode(ctx context.Context, namespace, name string, m v1alpha1.Mode) error {
	return k.cluster.SetMode(ctx, namespace, name, m)
}

// SetNamespaceMode sets the namespace's bulkhead.io/mode label.
func (k *KubeClient) SetNamespaceMode(ctx context.Context, namespace string, m v1alpha1.Mode) error {
	return k.cluster.SetNamespaceMode(ctx, namespace, m)
}
