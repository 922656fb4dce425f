package run

import (
	"net"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
)

// Bounds of the control plane's servers (docs/operations.md, "Limits").
// At a connection bound the listener stops accepting until a connection
// closes: new connections wait in the kernel's backlog (backpressure), and
// are refused by the kernel once it is full.
const (
	// MaxGRPCConns bounds the gRPC server's connections (proxies, Envoy
	// sidecars; each uses one).
	MaxGRPCConns = 8192
	// MaxGRPCStreams bounds the concurrent streams of one gRPC connection
	// (a proxy needs ADS, flow reports and certificates; Envoy ADS and the
	// access log).
	MaxGRPCStreams = 64
	// MaxGRPCMessage bounds one received gRPC message. gRPC's default, 4
	// MiB, is less than a proxy's report batch (report.Options.MaxBatch,
	// 1000 flows) at its worst (every flow with 16 resources of 256 bytes:
	// about 5 MB), which would be refused and resent for ever.
	MaxGRPCMessage = 16 << 20
	// MaxAdminConns bounds the admin server's connections.
	MaxAdminConns = 256
	// MaxAdminHeader bounds an admin request's header.
	MaxAdminHeader = 64 << 10
)

// grpcLimits are the gRPC server's per-connection bounds.
func grpcLimits() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxConcurrentStreams(MaxGRPCStreams), grpc.MaxRecvMsgSize(MaxGRPCMessage)}
}

// limitConns bounds the connections l accepts at once to n.
func limitConns(l net.Listener, n int) net.Listener { return netutil.LimitListener(l, n) }
