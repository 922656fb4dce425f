package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// TestDiscoverLearnsExactlyTheCommandsUsed: in discover mode, cart's real
// redis-cli traffic becomes one learned rule from cart on 6379/redis with
// exactly the commands it used; the export applied back is unchanged (the
// store does not rewrite its file) and exports byte for byte the same.
func TestDiscoverLearnsExactlyTheCommandsUsed(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	e := newEnv(t, ctx, 1)

	discover(t, ctx, e, discoveryTraffic, discoveryLearned)

	dir := t.TempDir()
	first := filepath.Join(dir, "first.yaml")
	if out, err := e.CLI(ctx, "policy", "export", "-n", e.Namespace, "-f", first); err != nil {
		t.Fatalf("bulkhead policy export: %v\n%s", err, out)
	}
	exported, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bulkhead policy export:\n%s", exported)
	ps, err := v1alpha1.UnmarshalYAML(exported)
	if err != nil {
		t.Fatalf("the export does not parse: %v\n%s", err, exported)
	}
	want := []v1alpha1.Rule{{
		Name:   "from-cart-redis-6379",
		Origin: v1alpha1.OriginLearned,
		Peers:  []v1alpha1.Peer{{Segment: "cart"}},
		Ports:  []v1alpha1.PortProtocol{{Port: 6379, Protocol: "redis"}},
		Redis:  &v1alpha1.RedisMatch{Commands: discoveryLearned},
	}}
	if len(ps) != 1 || ps[0].Namespace != e.Namespace || ps[0].Name != e.Server {
		t.Fatalf("export has %d policies, want only %s/%s:\n%s", len(ps), e.Namespace, e.Server, exported)
	}
	p := ps[0]
	// The peer may name its namespace or leave it implied; the rest must be
	// exactly what cart did.
	got := p.Spec.Ingress
	for i := range got {
		for j := range got[i].Peers {
			if got[i].Peers[j].Namespace == e.Namespace {
				got[i].Peers[j].Namespace = ""
			}
		}
	}
	// Each learned rule says which proxy reported which flow first.
	for _, r := range got {
		if lf := r.LearnedFrom; lf == nil || lf.Node != e.Node() || lf.Flow == "" || lf.Time == nil {
			t.Errorf("rule %s: learnedFrom %+v, want node %s, the flow and its time", r.Name, lf, e.Node())
		}
	}
	if d := cmp.Diff(want, clearProvenance(got)); d != "" {
		t.Errorf("learned ingress rules (-want +got):\n%s\nexport:\n%s", d, exported)
	}
	if len(p.Spec.Egress) != 0 || p.Spec.Selector != nil || p.Spec.Mode != "" {
		t.Errorf("export has more than the learned rule: egress %v, selector %v, mode %q\n%s",
			p.Spec.Egress, p.Spec.Selector, p.Spec.Mode, exported)
	}

	// Applying the export changes nothing, and the store keeps its file.
	stored := filepath.Join(e.StateDir, "policies", e.Namespace, e.Server+".yaml")
	before := statFile(t, stored)
	out, err := e.CLI(ctx, "policy", "apply", "-f", first)
	if err != nil {
		t.Fatalf("bulkhead policy apply: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(out), "segmentpolicy "+e.Namespace+"/"+e.Server+" unchanged"; got != want {
		t.Errorf("bulkhead policy apply printed %q, want %q", got, want)
	}
	if after := statFile(t, stored); after != before {
		t.Errorf("the store rewrote %s on an unchanged apply: %+v, then %+v", stored, before, after)
	}

	second := filepath.Join(dir, "second.yaml")
	if out, err := e.CLI(ctx, "policy", "export", "-n", e.Namespace, "-f", second); err != nil {
		t.Fatalf("second bulkhead policy export: %v\n%s", err, out)
	}
	again, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(exported, again) {
		t.Errorf("the second export differs from the first:\n%s", cmp.Diff(string(exported), string(again)))
	}
}

// fileID is what a rewrite (temp file and rename) changes.
type fileID struct {
	ino   uint64
	mtime int64
	size  int64
}

func statFile(t *testing.T, path string) fileID {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the store's file: %v", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileID{ino: st.Ino, mtime: fi.ModTime().UnixNano(), size: fi.Size()}
}
