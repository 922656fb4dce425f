package als

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bulkhead-io/bulkhead/controlplane/flows"
)

// headerNode stands for the peer's certificate (controlplane/run's test
// covers the real one over TLS): the node a stream proves is the
// x-test-node header, none without it.
type headerNode struct{}

func (headerNode) NodeOf(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-test-node"); len(v) == 1 {
		return v[0], nil
	}
	return "", status.Error(codes.Unauthenticated, "no client certificate")
}

// TestAuthorizer: with an Authorizer, a stream whose peer proves no node is
// refused, one naming another node than its certificate's ends with
// PermissionDenied and records nothing, and its own node's entries flow.
func TestAuthorizer(t *testing.T) {
	e := newEnvWith(t, "discover", Options{Authorizer: headerNode{}})
	entries := httpLogs("api.demo", entry("198.18.20.20", corev3.RequestMethod_GET, "/users/1", "api.demo.test", nil, ""))
	send := func(node string) error {
		ctx := t.Context()
		if node != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-test-node", node)
		}
		stream, err := e.client.StreamAccessLogs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(entries) // a refused stream fails the send; CloseAndRecv has the status
		_, err = stream.CloseAndRecv()
		return err
	}
	if err := send(""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no certificate: %v, want Unauthenticated", err)
	}
	if err := send("web.demo"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("web's certificate naming api.demo: %v, want PermissionDenied", err)
	}
	if n := len(e.rec.Flows(flows.Filter{})); n != 0 {
		t.Errorf("%d flows recorded from refused streams", n)
	}
	if err := send("api.demo"); err != nil {
		t.Errorf("api's own entries: %v", err)
	}
	if n := len(e.rec.Flows(flows.Filter{})); n != 1 {
		t.Errorf("%d flows recorded, want api's one", n)
	}
}
