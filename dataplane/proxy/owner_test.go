package proxy_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
)

// TestOutboundNeedsMarkOrOwner: an outbound proxy without a mark refuses
// to start unless the redirect leaves its user alone (OwnerExcluded);
// with it, it serves until its context ends. (dataplane/agent's
// TestOutboundOwnerExcluded runs it that way behind a real redirect.)
func TestOutboundNeedsMarkOrOwner(t *testing.T) {
	for _, owner := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := proxy.New(proxy.Config{Listener: ln, Engine: &enforce.Engine{}, Outbound: true, OwnerExcluded: owner})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err = p.Start(ctx)
		cancel()
		if owner && err != nil {
			t.Errorf("OwnerExcluded without a mark: Start = %v, want nil after the context ended", err)
		}
		if !owner {
			if err == nil || !strings.Contains(err.Error(), "needs a mark or its user excluded") {
				t.Errorf("no mark, no OwnerExcluded: Start = %v, want the missing mark reported", err)
			}
			ln.Close()
		}
	}
}
