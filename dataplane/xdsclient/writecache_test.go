package xdsclient

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// TestWriteCache: what WriteCache writes, LoadCache reads back and a
// Client restores and applies as the node's policy.
func TestWriteCache(t *testing.T) {
	dir := t.TempDir()
	pol := policy("w1", bulkheadv1.Mode_MODE_PROTECT)
	if err := WriteCache(dir, testNode, pol, []*bulkheadv1.Identity{idRedis, idCart}); err != nil {
		t.Fatalf("WriteCache: %v", err)
	}
	p, ids, err := LoadCache(dir)
	if err != nil {
		t.Fatalf("LoadCache: %v", err)
	}
	if diff := cmp.Diff(pol, p, protocmp.Transform()); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*bulkheadv1.Identity{idCart, idRedis}, ids, protocmp.Transform()); diff != "" {
		t.Errorf("identities (-want +got):\n%s", diff)
	}

	rec := &recorder{}
	c, err := New(Config{Conn: dial(t, freeAddr(t)), Node: testNode, CacheDir: dir, Apply: rec.apply}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Restore()
	if _, n := rec.last(); n != 1 {
		t.Fatalf("restore applied %d times, want 1", n)
	}
	waitApplied(t, rec, "w1", "demo/cart", "demo/redis")
	if v := c.Status().PolicyVersion; v != "w1" {
		t.Errorf("policy version after restore = %q, want the revision w1", v)
	}
}

func TestWriteCacheRefuses(t *testing.T) {
	pol := policy("w1", bulkheadv1.Mode_MODE_PROTECT)
	for _, tc := range []struct {
		name string
		node string
		pol  *bulkheadv1.ProxyPolicy
		ids  []*bulkheadv1.Identity
		want string
	}{
		{"no node", "", pol, nil, "no node id"},
		{"long node", strings.Repeat("n", maxNodeLen+1), pol, nil, "longer than"},
		{"no policy", testNode, nil, nil, "no proxy policy"},
		{"nameless identity", testNode, pol, []*bulkheadv1.Identity{{Namespace: "demo"}}, "identity 0: no namespace or workload"},
		{"duplicate identity", testNode, pol, []*bulkheadv1.Identity{idCart, idRedis, idCart}, `"demo/cart" given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteCache(dir, tc.node, tc.pol, tc.ids)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WriteCache: %v, want an error with %q", err, tc.want)
			}
			if _, _, err := LoadCache(dir); err == nil {
				t.Error("a refused WriteCache left a cache file")
			}
		})
	}
}
