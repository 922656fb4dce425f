package run

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/promote"
)

const promotedPolicy = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata: {name: cart, namespace: demo}
spec:
  mode: discover
  promotion: {enabled: true, learnQuiet: 0s, until: monitor}
`

// TestRunPromotes checks the wiring: a segment that opted in with no quiet
// period is promoted by the running control plane, listed by
// GET /v1/promotions, and a veto through the admin API is kept in its spec.
func TestRunPromotes(t *testing.T) {
	dir := t.TempDir()
	ready := make(chan Addrs, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	tokFile := testTokenFile(t)
	go func() {
		done <- Run(ctx, Config{
			StateDir:      filepath.Join(dir, "state"),
			AdminAuth:     AdminAuthConfig{TokenFile: tokFile},
			GRPCListener:  listen(t),
			AdminListener: listen(t),
			Promotion:     PromotionConfig{Interval: 10 * time.Millisecond},
			Ready:         func(a Addrs) { ready <- a },
		}, testLog(t))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var base string
	select {
	case a := <-ready:
		base = "http://" + a.Admin.String()
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	if code, b := httpDo(t, "POST", base+"/v1/policies/apply", promotedPolicy); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	var recs []promote.Record
	for deadline := time.Now().Add(5 * time.Second); ; {
		code, b := httpDo(t, "GET", base+"/v1/promotions", "")
		if code != 200 {
			t.Fatalf("promotions: %d %s", code, b)
		}
		if err := json.Unmarshal(b, &recs); err != nil {
			t.Fatal(err)
		}
		if len(recs) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(recs) != 1 || recs[0].Segment != "demo/cart" || recs[0].To != "monitor" {
		t.Fatalf("promotions = %+v", recs)
	}
	if code, b := httpDo(t, "POST", base+"/v1/segments/demo/cart/promotion/veto", ""); code != 200 {
		t.Fatalf("veto: %d %s", code, b)
	}
	code, b := httpDo(t, "GET", base+"/v1/policies/export", "")
	if code != 200 || !containsAll(string(b), "vetoed: true", "mode: monitor") {
		t.Fatalf("export after veto: %d %s", code, b)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
