// Package operator holds the end-to-end tests of the operator tools: the
// flow history, explain, replay and drift, through the real control plane
// (controlplane/run), flow reports over gRPC and the bulkhead CLI.
package operator
