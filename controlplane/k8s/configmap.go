package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NamespacesLabelled returns, sorted, the namespaces (from the informers'
// cache) whose label key has the value value.
func (c *Cluster) NamespacesLabelled(ctx context.Context, key, value string) ([]string, error) {
	var nss corev1.NamespaceList
	if err := c.cache.List(ctx, &nss, client.UnsafeDisableDeepCopy, client.MatchingLabels{key: value}); err != nil {
		return nil, fmt.Errorf("namespaces labelled %s=%s: %w", key, value, err)
	}
	out := make([]string, 0, len(nss.Items))
	for _, ns := range nss.Items {
		if ns.DeletionTimestamp == nil {
			out = append(out, ns.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ApplyConfigMap writes the keys of data into ConfigMap ns/name by
// server-side apply under field manager manager (forced: the keys are
// Bulkhead's), creating the ConfigMap when absent. Keys and labels that
// other managers own are left alone. Applying what is there already changes
// nothing, not even the resourceVersion.
func (c *Cluster) ApplyConfigMap(ctx context.Context, ns, name, manager string, labels, data map[string]string) error {
	doc := map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata":   map[string]any{"namespace": ns, "name": name, "labels": labels},
		"data":       data,
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := c.client.Patch(ctx, cm, client.RawPatch(types.ApplyPatchType, raw), client.FieldOwner(manager), client.ForceOwnership); err != nil {
		return fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	return nil
}
