// Package bulkheadv1 is the generated Go code of Bulkhead's own protobufs
// (controlplane/api/proto/bulkhead/v1): the proxy's xDS resources
// (ProxyPolicy, Identity) and the flow reports (FlowService). Regenerate with
// `make generate`; do not edit the *.pb.go files.
package bulkheadv1
