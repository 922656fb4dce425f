package run

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/inject"
)

// The CA bundle published for injected proxies (kube mode): ConfigMap
// inject.CAConfigMap, key inject.CAKey, in every namespace labelled
// inject.LabelInject=enabled, so that the sidecar the injector adds can
// verify the control plane. Written by the leader with server-side apply
// under caManager; rewritten when the bundle changes, when a namespace is
// newly labelled, and every caRepublish anyway (someone may have deleted
// it).
const (
	caManager   = "bulkhead-ca"
	caRepublish = 5 * time.Minute
)

// caPublished remembers, per namespace, which bundle was written and when.
type caPublished struct {
	sum  [sha256.Size]byte
	when time.Time
}

// publishCA writes the CA bundle where it is missing or stale. It does
// nothing in plaintext mode (no bundle) or when this replica does not lead.
func (k *kube) publishCA(ctx context.Context, now time.Time) {
	if k.caBundle == nil || !k.el.IsLeader() {
		return
	}
	bundle := k.caBundle()
	if len(bundle) == 0 {
		return
	}
	sum := sha256.Sum256(bundle)
	nss, err := k.cl.NamespacesLabelled(ctx, inject.LabelInject, "enabled")
	if err != nil {
		k.log.Warn("CA bundle not published", "error", err)
		return
	}
	if k.caDone == nil {
		k.caDone = make(map[string]caPublished)
	}
	live := make(map[string]bool, len(nss))
	for _, ns := range nss {
		live[ns] = true
		if p, ok := k.caDone[ns]; ok && p.sum == sum && now.Sub(p.when) < caRepublish {
			continue
		}
		if !k.el.IsLeader() || ctx.Err() != nil {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, kubeTimeout)
		err := k.cl.ApplyConfigMap(cctx, ns, inject.CAConfigMap, caManager,
			map[string]string{"app.kubernetes.io/managed-by": "bulkhead"},
			map[string]string{inject.CAKey: string(bundle)})
		cancel()
		if err != nil {
			k.log.Warn("CA bundle not published", "namespace", ns, "error", err)
			continue
		}
		k.caDone[ns] = caPublished{sum: sum, when: now}
		k.log.Debug("CA bundle published", "namespace", ns)
	}
	for ns := range k.caDone {
		if !live[ns] {
			delete(k.caDone, ns) // labelled again later: written again
		}
	}
}
