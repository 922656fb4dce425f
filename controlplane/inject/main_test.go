package inject_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Serve and Certs.Start end with their contexts.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
