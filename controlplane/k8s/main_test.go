package k8s_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the Cluster starts ends with its Start.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
