// Package grpcxds holds the end-to-end tests of the Envoy xDS path against
// a real consumer: gRPC-Go's xDS implementation. No Envoy binary can be
// installed where these tests run, and gRPC-Go is the stricter of the two
// consumers (listener address equal to the listening IP, NonForwardingAction
// routes, no destination_port filter-chain match), so a gRPC-Go server
// built with xds.NewGRPCServer gets its inbound listener and RBAC from the
// control plane, and a gRPC-Go client resolves xds:/// targets through it.
// Each runs as a process of its own (GRPC_XDS_BOOTSTRAP is read at start)
// in a network namespace of a test/lab, so that clients in other
// namespaces connect from distinct addresses of 198.18.0.0/15. Needs root.
package grpcxds
