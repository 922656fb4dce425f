package explain

import (
	"sort"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
)

// identitiesOf lists the compiled identities sorted by name.
func identitiesOf(out *compile.Output) []*bulkheadv1.Identity {
	keys := make([]string, 0, len(out.Identities))
	for k := range out.Identities {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ids := make([]*bulkheadv1.Identity, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, out.Identities[k])
	}
	return ids
}
