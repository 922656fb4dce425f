package flows

import (
	"errors"
	"fmt"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// validDstName checks Flow.dst_name: empty, or, on an egress flow only, a
// DNS name as bulkheadv1.ValidDstName accepts (lower case, no final dot, at
// most bulkheadv1.MaxDstName bytes). A source address has no name: an
// ingress flow carrying one is refused.
func validDstName(f *bulkheadv1.Flow) error {
	name := f.GetDstName()
	switch {
	case name == "":
		return nil
	case len(name) > bulkheadv1.MaxDstName:
		return fmt.Errorf("dst_name of %d bytes, at most %d", len(name), bulkheadv1.MaxDstName)
	case f.GetDirection() != bulkheadv1.Direction_DIRECTION_EGRESS:
		return errors.New("dst_name on an ingress flow")
	case !bulkheadv1.ValidDstName(name):
		return fmt.Errorf("dst_name %q is not a DNS name (lower case, no final dot)", name)
	}
	return nil
}
