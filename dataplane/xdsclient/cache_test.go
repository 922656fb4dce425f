package xdsclient

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

func testCacheContent() (*policyEntry, map[string]*identityEntry) {
	return &policyEntry{name: testNode, version: "p1", msg: policy("r1", bulkheadv1.Mode_MODE_PROTECT)},
		map[string]*identityEntry{
			"shop/web":   {name: "shop/web", version: "i3", msg: idShop},
			"demo/cart":  {name: "demo/cart", version: "i1", msg: idCart},
			"demo/redis": {name: "demo/redis", version: "i2", msg: idRedis},
		}
}

// TestCacheRoundTrip: what writeCache writes, loadCache reads back with the
// versions, identities sorted, and rewriting replaces the file.
func TestCacheRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "made-by-write")
	pol, ids := testCacheContent()
	if err := writeCache(dir, pol, ids); err != nil {
		t.Fatalf("writeCache: %v", err)
	}
	gotPol, gotIDs, err := loadCache(dir)
	if err != nil {
		t.Fatalf("loadCache: %v", err)
	}
	if gotPol.name != testNode || gotPol.version != "p1" {
		t.Errorf("policy entry %s@%s, want %s@p1", gotPol.name, gotPol.version, testNode)
	}
	var names []string
	for _, id := range gotIDs {
		names = append(names, id.name+"@"+id.version)
	}
	if diff := cmp.Diff([]string{"demo/cart@i1", "demo/redis@i2", "shop/web@i3"}, names); diff != "" {
		t.Errorf("identities (-want +got):\n%s", diff)
	}

	p, list, err := LoadCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pol.msg, p, protocmp.Transform()); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*bulkheadv1.Identity{idCart, idRedis, idShop}, list, protocmp.Transform()); diff != "" {
		t.Errorf("identities (-want +got):\n%s", diff)
	}

	// Rewrite with fewer identities: replaced, no temporary file left.
	if err := writeCache(dir, pol, nil); err != nil {
		t.Fatal(err)
	}
	if _, list, err := LoadCache(dir); err != nil || len(list) != 0 {
		t.Errorf("after rewrite: %d identities, %v", len(list), err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != CacheFile {
		t.Errorf("cache dir holds %v, want only %s", entries, CacheFile)
	}
}

func TestLoadCacheMissing(t *testing.T) {
	_, _, err := LoadCache(t.TempDir())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadCache of an empty dir: %v, want fs.ErrNotExist", err)
	}
}

// TestLoadCacheCorrupt: every kind of damage is a clear error, not a panic
// and not fs.ErrNotExist.
func TestLoadCacheCorrupt(t *testing.T) {
	pol, ids := testCacheContent()
	good, err := encodeCache(pol, ids)
	if err != nil {
		t.Fatal(err)
	}
	// sealed builds a file from a body with a correct checksum.
	sealed := func(body ...byte) []byte {
		b := append([]byte(cacheMagic), cacheFormat)
		b = append(b, body...)
		return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x40
	newer := append([]byte(nil), good...)
	newer[len(cacheMagic)] = 2

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"truncated", good[:len(good)-9], "checksum"},
		{"bad magic", append([]byte("NOTACACHE"), good[9:]...), "bad magic"},
		{"flipped bit", flipped, "checksum"},
		{"newer format", newer, "unsupported cache format 2"},
		{"no records", sealed(), "no proxy policy"},
		{"zero length record", sealed(0), "out of range"},
		{"record longer than file", sealed(0x7f, 1, 2), "out of range"},
		{"record over limit", sealed(binary.AppendUvarint(nil, maxCacheRecord+1)...), "out of range"},
		{"bad varint", sealed(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "bad length"},
		{"not a resource", sealed(2, 0xff, 0xff), "record 0"},
		{"identity first", sealedResource(t, sealed, "demo/cart"), "record 0: resource \"demo/cart\": type \"type.googleapis.com/bulkhead.v1.Identity\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, CacheFile), tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := LoadCache(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, fs.ErrNotExist) {
				t.Errorf("LoadCache: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// sealedResource builds a file whose only record is an Identity resource.
func sealedResource(t *testing.T, sealed func(...byte) []byte, name string) []byte {
	t.Helper()
	body, err := proto.Marshal(idCart)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := proto.Marshal(&discovery.Resource{Name: name, Version: "v", Resource: &anypb.Any{TypeUrl: IdentityTypeURL, Value: body}})
	if err != nil {
		t.Fatal(err)
	}
	return sealed(append(binary.AppendUvarint(nil, uint64(len(rec))), rec...)...)
}
