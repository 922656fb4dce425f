package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// List returns every SegmentPolicy the informer holds, sorted by namespace
// and name, as the API server stores them (with status). The caller owns
// the result.
func (c *Cluster) List(ctx context.Context) ([]*v1alpha1.SegmentPolicy, error) {
	var l v1alpha1.SegmentPolicyList
	if err := c.cache.List(ctx, &l); err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	out := make([]*v1alpha1.SegmentPolicy, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
		out[i].TypeMeta = v1alpha1.TypeMetaSegmentPolicy()
	}
	slices.SortFunc(out, func(a, b *v1alpha1.SegmentPolicy) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out, nil
}

// Get returns policy ns/name from the informer; false when there is none.
func (c *Cluster) Get(ctx context.Context, ns, name string) (*v1alpha1.SegmentPolicy, bool, error) {
	var p v1alpha1.SegmentPolicy
	if err := c.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("get policy %s/%s: %w", ns, name, err)
	}
	p.TypeMeta = v1alpha1.TypeMetaSegmentPolicy()
	return &p, true, nil
}

// Export returns the policies of namespace ns (all when ns is empty) in the
// deterministic export form of v1alpha1.MarshalYAML.
func (c *Cluster) Export(ctx context.Context, ns string) ([]byte, error) {
	all, err := c.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	ps := all[:0]
	for _, p := range all {
		if ns == "" || p.Namespace == ns {
			ps = append(ps, p)
		}
	}
	out, err := v1alpha1.MarshalYAML(ps)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return out, nil
}

// Apply validates every policy and, when all are valid, applies each with
// server-side apply under FieldManager, taking over the fields it sets
// (force), as `kubectl apply --server-side --force-conflicts` would. Unlike
// the standalone store, rules that other field managers own (the learner's,
// GitOps') and that a policy leaves out stay. It returns the keys
// ("namespace/name", sorted) of the policies whose export form changed.
// Validation is all-or-nothing; writing is not (the API has no
// transactions): an error stops at the policy that failed. Invalid input
// (Validate's problems, or the API server's refusal) is a
// *store.InvalidError (errors.Is store.ErrInvalid).
func (c *Cluster) Apply(ctx context.Context, ps []*v1alpha1.SegmentPolicy) ([]string, error) {
	var errs []error
	seen := make(map[string]bool, len(ps))
	for i, p := range ps {
		if p == nil {
			errs = append(errs, fmt.Errorf("policy %d: nil", i+1))
			continue
		}
		key := p.Namespace + "/" + p.Name
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
		if seen[key] {
			errs = append(errs, fmt.Errorf("%s: given twice", key))
		}
		seen[key] = true
	}
	if len(errs) > 0 {
		return nil, &store.InvalidError{Problems: errs}
	}
	var changed []string
	for _, p := range ps {
		key := p.Namespace + "/" + p.Name
		before, err := c.fresh(ctx, p.Namespace, p.Name)
		if err != nil && !errors.Is(err, errNoPolicy) {
			return changed, fmt.Errorf("apply %s: %w", key, err)
		}
		np := v1alpha1.ForExport(p)
		after, err := c.apply(ctx, np, FieldManager, true)
		if apierrors.IsInvalid(err) { // the CRD's schema or CEL rules
			return changed, &store.InvalidError{Problems: []error{fmt.Errorf("%s: %w", key, err)}}
		}
		if err != nil {
			return changed, fmt.Errorf("apply %s: %w", key, err)
		}
		if differ, err := exportDiffers(before, after); err != nil {
			return changed, fmt.Errorf("apply %s: %w", key, err)
		} else if differ {
			changed = append(changed, key)
		}
	}
	slices.Sort(changed)
	return changed, nil
}

// SetMode sets spec.mode of policy ns/name with server-side apply under
// FieldManagerMode, creating the policy when there is none. An empty mode
// removes spec.mode (a merge patch) so that the defaults apply.
func (c *Cluster) SetMode(ctx context.Context, ns, name string, m v1alpha1.Mode) error {
	key := ns + "/" + name
	if m == "" {
		patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"mode":null}}`))
		p := &v1alpha1.SegmentPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := c.client.Patch(ctx, p, patch, client.FieldOwner(FieldManagerMode)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("set mode of %s: %w", key, err)
		}
		return nil
	}
	p := &v1alpha1.SegmentPolicy{TypeMeta: v1alpha1.TypeMetaSegmentPolicy(), ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	p.Spec.Mode = m
	if err := p.Validate(); err != nil {
		return fmt.Errorf("set mode of %s: %w", key, err)
	}
	if _, err := c.apply(ctx, p, FieldManagerMode, true); err != nil {
		return fmt.Errorf("set mode of %s: %w", key, err)
	}
	return nil
}

// MergeLearned merges learned rules into direction dir of policy ns/name
// as store.MergeLearned does, and writes the result with server-side apply
// under FieldManagerLearner: the apply names only the learned rules the
// learner owns (or adds), in both directions, so rules of other field
// managers are never changed. A rule another manager owns any field of is
// treated as a person's, whatever its origin: the learner does not widen
// it, and learns beside it under the name with store.LearnedSuffix. The
// apply carries the resourceVersion read, so a concurrent change makes it
// fail and it is retried on the new object (up to 5 times). It reports
// whether anything changed; creates the policy (no mode) when absent.
func (c *Cluster) MergeLearned(ctx context.Context, ns, name string, dir store.Direction, rules []v1alpha1.Rule) (bool, error) {
	key := ns + "/" + name
	if len(rules) == 0 {
		return false, nil
	}
	c.learnMu.Lock()
	defer c.learnMu.Unlock()
	var err error
	for range 5 {
		var changed bool
		changed, err = c.mergeLearnedOnce(ctx, ns, name, dir, rules)
		if err == nil || !apierrors.IsConflict(err) {
			return changed, err
		}
		c.log.Debug("k8s: learned rules: policy changed meanwhile, retrying", "policy", key)
	}
	return false, fmt.Errorf("merge learned rules into %s: %w", key, err)
}

func (c *Cluster) mergeLearnedOnce(ctx context.Context, ns, name string, dir store.Direction, rules []v1alpha1.Rule) (bool, error) {
	key := ns + "/" + name
	cur, err := c.fresh(ctx, ns, name)
	if errors.Is(err, errNoPolicy) {
		cur = &v1alpha1.SegmentPolicy{TypeMeta: v1alpha1.TypeMetaSegmentPolicy(), ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	} else if err != nil {
		return false, fmt.Errorf("merge learned rules into %s: %w", key, err)
	}
	foreign, owned, err := ruleOwners(cur.ManagedFields)
	if err != nil {
		return false, fmt.Errorf("merge learned rules into %s: %w", key, err)
	}
	work := cur.DeepCopy()
	for _, list := range [][]v1alpha1.Rule{work.Spec.Ingress, work.Spec.Egress} {
		for i := range list {
			if foreign[list[i].Name] { // untouchable: as if a person's
				list[i].Origin = v1alpha1.OriginUser
			}
		}
	}
	// The learner's apply names the learned rules it may change and, as
	// they are, the rules it owns a share of with another manager: leaving
	// those out would remove its fields of them.
	mine := func(p *v1alpha1.SegmentPolicy) (in, eg []v1alpha1.Rule) {
		pick := func(rs, server []v1alpha1.Rule) []v1alpha1.Rule {
			var out []v1alpha1.Rule
			for _, r := range rs {
				switch {
				case foreign[r.Name] && owned[r.Name]:
					at := slices.IndexFunc(server, func(s v1alpha1.Rule) bool { return s.Name == r.Name })
					if at < 0 {
						continue
					}
					r = *server[at].DeepCopy()
				case r.Origin == v1alpha1.OriginLearned:
					r = *r.DeepCopy()
					r.Normalize()
				default:
					continue
				}
				out = append(out, r)
			}
			slices.SortFunc(out, func(a, b v1alpha1.Rule) int { return strings.Compare(a.Name, b.Name) })
			return out
		}
		return pick(p.Spec.Ingress, cur.Spec.Ingress), pick(p.Spec.Egress, cur.Spec.Egress)
	}
	beforeIn, beforeEg := mine(work)
	if err := store.MergeLearnedInto(work, dir, rules, c.log); err != nil {
		return false, err
	}
	in, eg := mine(work)
	if cur.UID != "" && equalJSON(beforeIn, in) && equalJSON(beforeEg, eg) {
		return false, nil
	}
	ap := &v1alpha1.SegmentPolicy{TypeMeta: v1alpha1.TypeMetaSegmentPolicy(), ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: cur.ResourceVersion}}
	ap.Spec.Ingress, ap.Spec.Egress = in, eg
	if _, err := c.apply(ctx, ap, FieldManagerLearner, false); err != nil {
		return false, err
	}
	return true, nil
}

// fresh reads policy ns/name from the API server (not the informer);
// errNoPolicy when there is none.
func (c *Cluster) fresh(ctx context.Context, ns, name string) (*v1alpha1.SegmentPolicy, error) {
	var p v1alpha1.SegmentPolicy
	if err := c.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, errNoPolicy
		}
		return nil, err
	}
	p.TypeMeta = v1alpha1.TypeMetaSegmentPolicy()
	return &p, nil
}

// apply sends p as a server-side apply configuration: apiVersion, kind,
// name, namespace (resourceVersion when set, as a precondition), labels,
// annotations and the spec fields p sets. It returns the stored object.
func (c *Cluster) apply(ctx context.Context, p *v1alpha1.SegmentPolicy, manager string, force bool) (*v1alpha1.SegmentPolicy, error) {
	meta := map[string]any{"name": p.Name, "namespace": p.Namespace}
	if p.ResourceVersion != "" {
		meta["resourceVersion"] = p.ResourceVersion
	}
	if len(p.Labels) > 0 {
		meta["labels"] = p.Labels
	}
	if len(p.Annotations) > 0 {
		meta["annotations"] = p.Annotations
	}
	doc := map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       v1alpha1.KindSegmentPolicy,
		"metadata":   meta,
		"spec":       p.Spec,
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode apply configuration: %w", err)
	}
	out := &v1alpha1.SegmentPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}}
	opts := []client.PatchOption{client.FieldOwner(manager)}
	if force {
		opts = append(opts, client.ForceOwnership)
	}
	if err := c.client.Patch(ctx, out, client.RawPatch(types.ApplyPatchType, data), opts...); err != nil {
		return nil, err
	}
	out.TypeMeta = v1alpha1.TypeMetaSegmentPolicy()
	return out, nil
}

// ruleOwners returns the names of the rules (either direction) that a
// field manager other than FieldManagerLearner owns any field of (foreign),
// and of those FieldManagerLearner owns any field of (owned).
func ruleOwners(mfs []metav1.ManagedFieldsEntry) (foreign, owned map[string]bool, err error) {
	foreign, owned = make(map[string]bool), make(map[string]bool)
	for _, mf := range mfs {
		if mf.FieldsV1 == nil {
			continue
		}
		out := foreign
		if mf.Manager == FieldManagerLearner {
			out = owned
		}
		var fields struct {
			Spec map[string]map[string]json.RawMessage `json:"f:spec"`
		}
		if err := json.Unmarshal(mf.FieldsV1.GetRawBytes(), &fields); err != nil {
			return nil, nil, fmt.Errorf("managed fields of %s: %w", mf.Manager, err)
		}
		for _, list := range []string{"f:ingress", "f:egress"} {
			for k := range fields.Spec[list] {
				v, ok := strings.CutPrefix(k, "k:")
				if !ok {
					continue
				}
				var id struct {
					Name string `json:"name"`
				}
				if err := json.Unmarshal([]byte(v), &id); err != nil {
					return nil, nil, fmt.Errorf("managed fields of %s: rule key %s: %w", mf.Manager, k, err)
				}
				out[id.Name] = true
			}
		}
	}
	return foreign, owned, nil
}

// exportDiffers reports whether two versions of a policy differ in export
// form; a nil before differs from anything.
func exportDiffers(before, after *v1alpha1.SegmentPolicy) (bool, error) {
	if before == nil {
		return true, nil
	}
	a, err := v1alpha1.MarshalYAML([]*v1alpha1.SegmentPolicy{before})
	if err != nil {
		return false, err
	}
	b, err := v1alpha1.MarshalYAML([]*v1alpha1.SegmentPolicy{after})
	if err != nil {
		return false, err
	}
	return !bytes.Equal(a, b), nil
}

func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
