package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Field managers of the control plane's other writes.
const (
	// FieldManagerStatus owns what UpdateStatus writes (the status
	// subresource only).
	FieldManagerStatus = "bulkhead-status"
	// FieldManagerNamespace owns the mode label SetNamespaceMode sets.
	FieldManagerNamespace = "bulkhead-namespace-mode"
)

// UpdateStatus replaces the status of policy ns/name through the status
// subresource (a merge patch under FieldManagerStatus): the spec, which
// people, GitOps and the learner write, is never touched. A policy that is
// gone is not an error.
func (c *Cluster) UpdateStatus(ctx context.Context, ns, name string, st v1alpha1.SegmentPolicyStatus) error {
	// Every field is sent, zero ones as null, so that the patch replaces
	// the status as a whole.
	doc := map[string]any{
		"ingressRules":   nullIfZero(st.IngressRules),
		"ruleCount":      nullIfZero(st.RuleCount),
		"learnedRules":   nullIfZero(st.LearnedRules),
		"violations":     nullIfZero(st.Violations),
		"proxies":        nullIfZero(st.Proxies),
		"proxiesCurrent": nullIfZero(st.ProxiesCurrent),
		"rules":          st.Rules,
		"conditions":     st.Conditions,
	}
	data, err := json.Marshal(map[string]any{"status": doc})
	if err != nil {
		return fmt.Errorf("status of %s/%s: %w", ns, name, err)
	}
	p := &v1alpha1.SegmentPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := c.client.Status().Patch(ctx, p, client.RawPatch(types.MergePatchType, data), client.FieldOwner(FieldManagerStatus)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("status of %s/%s: %w", ns, name, err)
	}
	return nil
}

func nullIfZero[T int32 | int64](v T) any {
	if v == 0 {
		return nil
	}
	return v
}

// SetNamespaceMode sets the default mode of namespace ns (its LabelMode
// label, a merge patch under FieldManagerNamespace); an empty mode removes
// the label.
func (c *Cluster) SetNamespaceMode(ctx context.Context, ns string, m v1alpha1.Mode) error {
	var val any
	if m != "" {
		if !validMode(m) {
			return fmt.Errorf("set mode of namespace %s: %q is not discover, monitor or protect", ns, m)
		}
		val = string(m)
	}
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{LabelMode: val}}})
	if err != nil {
		return fmt.Errorf("set mode of namespace %s: %w", ns, err)
	}
	o := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := c.client.Patch(ctx, o, client.RawPatch(types.MergePatchType, data), client.FieldOwner(FieldManagerNamespace)); err != nil {
		return fmt.Errorf("set mode of namespace %s: %w", ns, err)
	}
	return nil
}

// PodRef is a pod as an Event names it.
type PodRef struct {
	Namespace, Name string
	UID             types.UID
}

// PodByIP returns the running pod (from the informer) that holds ip; false
// when none does. It scans the cached pods: callers rate-limit.
func (c *Cluster) PodByIP(ctx context.Context, ip netip.Addr) (PodRef, bool, error) {
	var pods corev1.PodList
	if err := c.cache.List(ctx, &pods, client.UnsafeDisableDeepCopy); err != nil {
		return PodRef{}, false, fmt.Errorf("pod of %s: %w", ip, err)
	}
	ip = ip.Unmap()
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, a := range podIPs(p) {
			if a == ip {
				return PodRef{Namespace: p.Namespace, Name: p.Name, UID: p.UID}, true, nil
			}
		}
	}
	return PodRef{}, false, nil
}

// LabelManaged on a Namespace, with the value "true", makes the control
// plane create a SegmentPolicy for each new segment of the namespace.
const LabelManaged = "bulkhead.io/managed"

// FieldManagerCreate owns the policies the control plane creates for new
// segments of managed namespaces.
const FieldManagerCreate = "bulkhead-autocreate"

// ManagedNamespaces returns the namespaces (from the informer) labelled
// LabelManaged=true.
func (c *Cluster) ManagedNamespaces(ctx context.Context) (map[string]bool, error) {
	var nss corev1.NamespaceList
	if err := c.cache.List(ctx, &nss, client.UnsafeDisableDeepCopy, client.MatchingLabels{LabelManaged: "true"}); err != nil {
		return nil, fmt.Errorf("managed namespaces: %w", err)
	}
	out := make(map[string]bool, len(nss.Items))
	for _, ns := range nss.Items {
		out[ns.Name] = true
	}
	return out, nil
}

// CreatePolicy creates policy ns/name with mode m and no rules under
// FieldManagerCreate. It reports false, and no error, when the policy
// exists already: a policy is never overwritten.
func (c *Cluster) CreatePolicy(ctx context.Context, ns, name string, m v1alpha1.Mode) (bool, error) {
	p := &v1alpha1.SegmentPolicy{TypeMeta: v1alpha1.TypeMetaSegmentPolicy(), ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	p.Spec.Mode = m
	if err := p.Validate(); err != nil {
		return false, fmt.Errorf("create policy %s/%s: %w", ns, name, err)
	}
	if err := c.client.Create(ctx, p, client.FieldOwner(FieldManagerCreate)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return false, fmt.Errorf("create policy %s/%s: %w", ns, name, err)
	}
	return true, nil
}
