//go:build tools

// Package tools pins helm.sh/helm/v3/cmd/helm in this throwaway module so that
// `go mod tidy` keeps its dependencies. Nothing here is built into Bulkhead.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
