package xdsclient

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/internal/atomicfile"
)

// CacheFile is the name of the last good configuration inside CacheDir.
const CacheFile = "last-good.pb"

// Cache file layout and limits; see the package doc.
const (
	cacheMagic       = "BHXDSC\x00"
	cacheFormat      = 1
	maxCacheBytes    = 256 << 20
	maxCacheRecord   = 16 << 20
	cacheHeaderBytes = len(cacheMagic) + 1
	cacheTrailer     = 4
)

var (
	crcTable    = crc32.MakeTable(crc32.Castagnoli)
	errNotExist = fs.ErrNotExist
)

// LoadCache reads the last good configuration that a Client wrote into dir:
// the ProxyPolicy and the identities, sorted by resource name. When there is
// none the error wraps fs.ErrNotExist; a damaged file is a plain error that
// says what is wrong. Start already restores the cache itself.
func LoadCache(dir string) (*bulkheadv1.ProxyPolicy, []*bulkheadv1.Identity, error) {
	pol, ids, err := loadCache(dir)
	if err != nil {
		return nil, nil, err
	}
	out := make([]*bulkheadv1.Identity, len(ids))
	for i, id := range ids {
		out[i] = id.msg
	}
	return pol.msg, out, nil
}

func loadCache(dir string) (*policyEntry, []*identityEntry, error) {
	path := filepath.Join(dir, CacheFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("xdsclient: load cache: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCacheBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("xdsclient: load cache %s: %w", path, err)
	}
	pol, ids, err := decodeCache(data)
	if err != nil {
		return nil, nil, fmt.Errorf("xdsclient: load cache %s: %w", path, err)
	}
	return pol, ids, nil
}

// decodeCache parses a cache file's content.
func decodeCache(data []byte) (*policyEntry, []*identityEntry, error) {
	switch {
	case len(data) > maxCacheBytes:
		return nil, nil, fmt.Errorf("corrupt: larger than %d bytes", maxCacheBytes)
	case len(data) < cacheHeaderBytes+cacheTrailer:
		return nil, nil, fmt.Errorf("corrupt: %d bytes, too short", len(data))
	case !bytes.HasPrefix(data, []byte(cacheMagic)):
		return nil, nil, errors.New("corrupt: not a bulkhead xds cache (bad magic)")
	case data[len(cacheMagic)] != cacheFormat:
		return nil, nil, fmt.Errorf("unsupported cache format %d (want %d)", data[len(cacheMagic)], cacheFormat)
	}
	end := len(data) - cacheTrailer
	if want, got := binary.BigEndian.Uint32(data[end:]), crc32.Checksum(data[:end], crcTable); want != got {
		return nil, nil, fmt.Errorf("corrupt: checksum %08x, want %08x", got, want)
	}

	var (
		pol  *policyEntry
		ids  []*identityEntry
		seen = map[string]struct{}{}
	)
	for rest, i := data[cacheHeaderBytes:end], 0; len(rest) > 0; i++ {
		n, k := binary.Uvarint(rest)
		if k <= 0 {
			return nil, nil, fmt.Errorf("corrupt: record %d: bad length", i)
		}
		rest = rest[k:]
		if n == 0 || n > maxCacheRecord || n > uint64(len(rest)) {
			return nil, nil, fmt.Errorf("corrupt: record %d: length %d out of range", i, n)
		}
		var r discovery.Resource
		if err := proto.Unmarshal(rest[:n], &r); err != nil {
			return nil, nil, fmt.Errorf("corrupt: record %d: %w", i, err)
		}
		rest = rest[n:]
		if i == 0 {
			msg := &bulkheadv1.ProxyPolicy{}
			if err := unmarshalResource(&r, PolicyTypeURL, msg); err != nil {
				return nil, nil, fmt.Errorf("corrupt: record 0: %w", err)
			}
			pol = &policyEntry{name: r.GetName(), version: r.GetVersion(), msg: msg}
			continue
		}
		msg := &bulkheadv1.Identity{}
		if err := unmarshalResource(&r, IdentityTypeURL, msg); err != nil {
			return nil, nil, fmt.Errorf("corrupt: record %d: %w", i, err)
		}
		if _, dup := seen[r.GetName()]; dup || r.GetName() == "" {
			return nil, nil, fmt.Errorf("corrupt: record %d: identity name %q empty or repeated", i, trunc(r.GetName()))
		}
		seen[r.GetName()] = struct{}{}
		ids = append(ids, &identityEntry{name: r.GetName(), version: r.GetVersion(), msg: msg})
	}
	if pol == nil {
		return nil, nil, errors.New("corrupt: no proxy policy")
	}
	slices.SortFunc(ids, func(a, b *identityEntry) int { return cmp.Compare(a.name, b.name) })
	return pol, ids, nil
}

// encodeCache builds a cache file's content.
func encodeCache(pol *policyEntry, ids map[string]*identityEntry) ([]byte, error) {
	buf := append([]byte(cacheMagic), cacheFormat)
	add := func(name, version, typ string, msg proto.Message) error {
		body, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			return fmt.Errorf("marshal %q: %w", name, err)
		}
		rec, err := proto.MarshalOptions{Deterministic: true}.Marshal(&discovery.Resource{
			Name: name, Version: version, Resource: &anypb.Any{TypeUrl: typ, Value: body},
		})
		if err != nil {
			return fmt.Errorf("marshal %q: %w", name, err)
		}
		if len(rec) > maxCacheRecord {
			return fmt.Errorf("resource %q: %d bytes, more than %d", name, len(rec), maxCacheRecord)
		}
		buf = binary.AppendUvarint(buf, uint64(len(rec)))
		buf = append(buf, rec...)
		return nil
	}
	if err := add(pol.name, pol.version, PolicyTypeURL, pol.msg); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(ids)) {
		id := ids[name]
		if err := add(id.name, id.version, IdentityTypeURL, id.msg); err != nil {
			return nil, err
		}
	}
	if len(buf)+cacheTrailer > maxCacheBytes {
		return nil, fmt.Errorf("%d bytes, more than %d", len(buf)+cacheTrailer, maxCacheBytes)
	}
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, crcTable)), nil
}

// writeCache replaces dir/CacheFile atomically: temporary file, fsync,
// rename, fsync of the directory.
func writeCache(dir string, pol *policyEntry, ids map[string]*identityEntry) error {
	data, err := encodeCache(pol, ids)
	if err != nil {
		return fmt.Errorf("xdsclient: write cache: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("xdsclient: write cache: %w", err)
	}
	// 0600: the cache holds the segment's whole policy.
	if err := atomicfile.Write(filepath.Join(dir, CacheFile), data, 0o600); err != nil {
		return fmt.Errorf("xdsclient: write cache: %w", err)
	}
	return nil
}
