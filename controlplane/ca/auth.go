package ca

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// PeerNode is the Authorizer of the xds, flows and als packages on a TLS
// server: the node id of the verified client certificate of the context's
// peer, or an Unauthenticated status error.
func PeerNode(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "not a TLS connection")
	}
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return "", status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	node, err := IdentityOf(chains[0][0])
	if err != nil {
		return "", status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	return node, nil
}

// Authorizer adapts PeerNode to the packages' Authorizer interfaces.
type Authorizer struct{}

// NodeOf is PeerNode.
func (Authorizer) NodeOf(ctx context.Context) (string, error) { return PeerNode(ctx) }

// open are the methods served without a client certificate.
func open(method string) bool {
	return method == bulkheadv1.CertificateService_Issue_FullMethodName ||
		strings.HasPrefix(method, "/grpc.health.v1.Health/")
}

// UnaryInterceptor requires a verified workload certificate for every
// unary method but Issue.
func UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !open(info.FullMethod) {
		if _, err := PeerNode(ctx); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

// StreamInterceptor requires a verified workload certificate for every
// stream (ADS, flow reports, access logs).
func StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !open(info.FullMethod) {
		if _, err := PeerNode(ss.Context()); err != nil {
			return err
		}
	}
	return handler(srv, ss)
}
