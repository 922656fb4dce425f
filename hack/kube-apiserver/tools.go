//go:build tools

// Package tools pins k8s.io/kubernetes/cmd/kube-apiserver in this throwaway module so that
// `go mod tidy` keeps its dependencies. Nothing here is built into Bulkhead.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
