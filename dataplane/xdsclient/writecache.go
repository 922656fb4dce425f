package xdsclient

import (
	"errors"
	"fmt"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// WriteCache writes p and ids into dir as node's last good configuration,
// the file a Client restores on Start (see the package doc for its format),
// so that a proxy can start enforcing a known policy without a control
// plane: benchmarks and tools use it. The policy's resource name is node
// and its version p's revision; each identity is named "namespace/workload"
// with an empty version. The file is replaced atomically. A nil policy, an
// empty node, an identity without a namespace or workload, or two
// identities with one name are refused.
func WriteCache(dir, node string, p *bulkheadv1.ProxyPolicy, ids []*bulkheadv1.Identity) error {
	switch {
	case node == "":
		return errors.New("xdsclient: write cache: no node id")
	case len(node) > maxNodeLen:
		return fmt.Errorf("xdsclient: write cache: node id longer than %d bytes", maxNodeLen)
	case p == nil:
		return errors.New("xdsclient: write cache: no proxy policy")
	}
	entries := make(map[string]*identityEntry, len(ids))
	for i, id := range ids {
		if id.GetNamespace() == "" || id.GetWorkload() == "" {
			return fmt.Errorf("xdsclient: write cache: identity %d: no namespace or workload", i)
		}
		name := id.GetNamespace() + "/" + id.GetWorkload()
		if _, dup := entries[name]; dup {
			return fmt.Errorf("xdsclient: write cache: identity %q given twice", trunc(name))
		}
		entries[name] = &identityEntry{name: name, msg: id}
	}
	return writeCache(dir, &policyEntry{name: node, version: p.GetRevision(), msg: p}, entries)
}
