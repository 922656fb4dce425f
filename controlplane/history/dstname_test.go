package history

import (
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

func TestFromFlowDstName(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	plain := flow("GET", "/", bulkheadv1.Verdict_VERDICT_ALLOW, 1, at)
	plain.Direction = bulkheadv1.Direction_DIRECTION_EGRESS
	a, b := FromFlow("n", plain, at), FromFlow("n", plain, at)
	if a.ID != b.ID || a.DstName != "" {
		t.Fatalf("unnamed records: IDs %s, %s, name %q", a.ID, b.ID, a.DstName)
	}
	// The ID of a record without a name is what it was before names
	// existed: the key without any name part.
	if want := idOf(a.key()); a.ID != want {
		t.Fatalf("ID %s, want %s", a.ID, want)
	}
	named := flow("GET", "/", bulkheadv1.Verdict_VERDICT_ALLOW, 1, at)
	named.Direction, named.DstName = bulkheadv1.Direction_DIRECTION_EGRESS, "api.example.com"
	other := flow("GET", "/", bulkheadv1.Verdict_VERDICT_ALLOW, 1, at)
	other.Direction, other.DstName = bulkheadv1.Direction_DIRECTION_EGRESS, "cdn.example.net"
	n, o := FromFlow("n", named, at), FromFlow("n", other, at)
	if n.DstName != "api.example.com" || n.ID == a.ID || n.ID == o.ID {
		t.Errorf("named records: %q IDs %s, %s, unnamed %s; want distinct IDs", n.DstName, n.ID, o.ID, a.ID)
	}
}
