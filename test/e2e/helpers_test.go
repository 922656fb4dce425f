package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperBins are the test servers of ./test/e2e/internal, built once on the
// first test that needs one (whatever BULKHEAD_BIN says: they are not
// Bulkhead's commands) into a temp dir that TestMain removes.
var helperBins struct {
	once sync.Once
	dir  string
	err  error
}

// helperBin returns the path of the test server name (kfakeserver,
// mongoresponder), building them if needed.
func helperBin(t *testing.T, name string) string {
	t.Helper()
	helperBins.once.Do(func() { helperBins.dir, helperBins.err = buildHelpers() })
	if helperBins.err != nil {
		t.Fatalf("test servers: %v", helperBins.err)
	}
	return filepath.Join(helperBins.dir, name)
}

func buildHelpers() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command to build ./test/e2e/internal/...: %w", err)
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the bulkhead module")
	}
	tmp, err := os.MkdirTemp("", "bulkhead-e2e-helpers-")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp+string(filepath.Separator), "./test/e2e/internal/...")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("go build ./test/e2e/internal/...: %w\n%s", err, out)
	}
	return tmp, nil
}

// removeHelpers removes the built test servers (TestMain calls it).
func removeHelpers() {
	if helperBins.dir != "" {
		os.RemoveAll(helperBins.dir)
	}
}
