package k8s

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ClusterPolicies returns every ClusterSegmentPolicy the informer holds,
// sorted by name. The caller owns the result.
func (c *Cluster) ClusterPolicies(ctx context.Context) ([]*v1alpha1.ClusterSegmentPolicy, error) {
	var l v1alpha1.ClusterSegmentPolicyList
	if err := c.cache.List(ctx, &l); err != nil {
		return nil, fmt.Errorf("list cluster policies: %w", err)
	}
	out := make([]*v1alpha1.ClusterSegmentPolicy, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	slices.SortFunc(out, func(a, b *v1alpha1.ClusterSegmentPolicy) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// NamespaceLabels returns the labels of every namespace (from the
// informer), by name. The caller owns the result.
func (c *Cluster) NamespaceLabels(ctx context.Context) (map[string]map[string]string, error) {
	var nss corev1.NamespaceList
	if err := c.cache.List(ctx, &nss); err != nil {
		return nil, fmt.Errorf("namespace labels: %w", err)
	}
	out := make(map[string]map[string]string, len(nss.Items))
	for _, ns := range nss.Items {
		out[ns.Name] = ns.Labels
	}
	return out, nil
}

// WithClusterPolicies returns the policies to compile: ps, with the rules
// of each cluster policy added (named v1alpha1.ClusterRuleName) to the
// policy of every segment it selects — a segment of a namespace whose
// labels (nsLabels) match its namespaceSelector with a workload whose
// labels match its selector; a selected segment without a policy gets one
// with only those rules (no mode: the defaults). The segment of a workload
// is the one controlplane/compile gives it: the first policy of its
// namespace by name whose selector matches it, else Workload.Segment, else
// its name. ps and cps are not modified; policies that gain no rule are
// shared with ps.
//
// A cluster policy that fails Validate is left out, and so are its rules
// in a segment where they would repeat a rule's name or pass
// v1alpha1.MaxRules; each is reported in the joined error, which leaves
// the result usable. The result is sorted by namespace and name.
func WithClusterPolicies(ps []*v1alpha1.SegmentPolicy, cps []*v1alpha1.ClusterSegmentPolicy, workloads []identity.Workload, nsLabels map[string]map[string]string) ([]*v1alpha1.SegmentPolicy, error) {
	if len(cps) == 0 {
		return ps, nil
	}
	var errs []error
	type csel struct {
		p       *v1alpha1.ClusterSegmentPolicy
		ns, sel labels.Selector
	}
	var sels []csel
	for _, cp := range cps {
		if err := cp.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("cluster policy %s: %w", cp.Name, err))
			continue
		}
		nsSel, _ := selectorOf(cp.Spec.NamespaceSelector)
		sel, _ := selectorOf(cp.Spec.Selector)
		sels = append(sels, csel{cp, nsSel, sel})
	}

	byKey := make(map[string]*v1alpha1.SegmentPolicy, len(ps))
	selecting := map[string][]*v1alpha1.SegmentPolicy{} // by namespace, with a selector, by name
	for _, p := range ps {
		byKey[p.Namespace+"/"+p.Name] = p
		if p.Spec.Selector != nil {
			selecting[p.Namespace] = append(selecting[p.Namespace], p)
		}
	}
	for _, l := range selecting {
		slices.SortFunc(l, func(a, b *v1alpha1.SegmentPolicy) int { return strings.Compare(a.Name, b.Name) })
	}
	segmentOf := func(w identity.Workload) string {
		set := labels.Set(w.Labels)
		for _, p := range selecting[w.Namespace] {
			if s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector); err == nil && s.Matches(set) {
				return p.Name
			}
		}
		return cmp.Or(w.Segment, w.Name)
	}

	// Selected segments, per cluster policy.
	chosen := make([]map[string]bool, len(sels))
	for i := range sels {
		chosen[i] = map[string]bool{}
	}
	for _, w := range workloads {
		nsSet, wSet := labels.Set(nsLabels[w.Namespace]), labels.Set(w.Labels)
		for i, s := range sels {
			if s.ns.Matches(nsSet) && s.sel.Matches(wSet) {
				chosen[i][w.Namespace+"/"+segmentOf(w)] = true
			}
		}
	}

	added := map[string]*v1alpha1.SegmentPolicy{} // copies that gain rules
	for i, s := range sels {
		keys := make([]string, 0, len(chosen[i]))
		for k := range chosen[i] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, key := range keys {
			p := added[key]
			if p == nil {
				if orig := byKey[key]; orig != nil {
					p = orig.DeepCopy()
				} else {
					ns, name, _ := strings.Cut(key, "/")
					p = &v1alpha1.SegmentPolicy{TypeMeta: v1alpha1.TypeMetaSegmentPolicy(), ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
				}
			}
			in, eg, err := addRules(p.Spec.Ingress, p.Spec.Egress, s.p)
			if err != nil {
				errs = append(errs, fmt.Errorf("cluster policy %s in segment %s: %w", s.p.Name, key, err))
				continue
			}
			p.Spec.Ingress, p.Spec.Egress = in, eg
			added[key] = p
		}
	}

	out := make([]*v1alpha1.SegmentPolicy, 0, len(ps)+len(added))
	for _, p := range ps {
		if a := added[p.Namespace+"/"+p.Name]; a != nil {
			out = append(out, a)
			delete(added, p.Namespace+"/"+p.Name)
			continue
		}
		out = append(out, p)
	}
	for _, p := range added {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *v1alpha1.SegmentPolicy) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out, errors.Join(errs...)
}

// addRules returns in and eg with cp's rules added (normalized, renamed),
// sorted by name; an error, and in and eg unchanged, when a name repeats
// or a direction would pass MaxRules.
func addRules(in, eg []v1alpha1.Rule, cp *v1alpha1.ClusterSegmentPolicy) ([]v1alpha1.Rule, []v1alpha1.Rule, error) {
	add := func(dst, src []v1alpha1.Rule) ([]v1alpha1.Rule, error) {
		if len(src) == 0 {
			return dst, nil
		}
		if len(dst)+len(src) > v1alpha1.MaxRules {
			return nil, fmt.Errorf("more than %d rules", v1alpha1.MaxRules)
		}
		out := slices.Clone(dst)
		for _, r := range src {
			r = *r.DeepCopy()
			r.Name = v1alpha1.ClusterRuleName(cp.Name, r.Name)
			if slices.ContainsFunc(out, func(o v1alpha1.Rule) bool { return o.Name == r.Name }) {
				return nil, fmt.Errorf("rule %q exists already", r.Name)
			}
			r.Normalize()
			out = append(out, r)
		}
		slices.SortFunc(out, func(a, b v1alpha1.Rule) int { return strings.Compare(a.Name, b.Name) })
		return out, nil
	}
	nin, err := add(in, cp.Spec.Ingress)
	if err != nil {
		return in, eg, fmt.Errorf("ingress: %w", err)
	}
	neg, err := add(eg, cp.Spec.Egress)
	if err != nil {
		return in, eg, fmt.Errorf("egress: %w", err)
	}
	return nin, neg, nil
}

// selectorOf converts a label selector; nil selects everything.
func selectorOf(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

// UpdateClusterStatus replaces the status of cluster policy name through
// the status subresource (a merge patch under FieldManagerStatus). A
// policy that is gone is not an error.
func (c *Cluster) UpdateClusterStatus(ctx context.Context, name string, st v1alpha1.ClusterSegmentPolicyStatus) error {
	doc := map[string]any{
		"ingressRules": nullIfZero(st.IngressRules),
		"egressRules":  nullIfZero(st.EgressRules),
		"segments":     nullIfZero(st.Segments),
		"conditions":   st.Conditions,
	}
	data, err := json.Marshal(map[string]any{"status": doc})
	if err != nil {
		return fmt.Errorf("status of cluster policy %s: %w", name, err)
	}
	p := &v1alpha1.ClusterSegmentPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.client.Status().Patch(ctx, p, client.RawPatch(types.MergePatchType, data), client.FieldOwner(FieldManagerStatus)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("status of cluster policy %s: %w", name, err)
	}
	return nil
}
