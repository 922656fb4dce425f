package kafka

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// TestTruncatedBodies cuts requests at every byte of their body and fixes
// the size prefix to the cut: the walker must refuse each cut (no frame)
// with a malformed-message error, never read past the message.
func TestTruncatedBodies(t *testing.T) {
	for name, msg := range map[string][]byte{
		"produce-v3":  produce(3, 1, 1, "orders", "audit"),
		"produce-v9":  produce(9, 1, 1, "orders", "audit"),
		"fetch-v4":    fetch(4, 1, 0, 0, "orders"),
		"fetch-v11":   fetch(11, 1, 0, 0, "orders", "audit"),
		"fetch-v13":   fetch(13, 1, 7, 1, "orders"),
		"metadata-v9": metadata(9, 1, "orders"),
	} {
		var f l7.Frame
		if op, n, err := NewParser().Parse(l7.DirRequest, msg, &f); op != l7.OpFrame || n != len(msg) || err != nil {
			t.Fatalf("%s whole: %v %d %v", name, op, n, err)
		}
		hdr := 4 + 2 + 2 + 4 + 2 + len("app")
		for cut := hdr; cut < len(msg); cut++ {
			m := append([]byte(nil), msg[:cut]...)
			binary.BigEndian.PutUint32(m, uint32(cut-4))
			op, n, err := NewParser().Parse(l7.DirRequest, m, &f)
			if err == nil || op == l7.OpFrame {
				t.Errorf("%s cut at %d of %d: %v %d %v, want an error", name, cut, len(msg), op, n, err)
				continue
			}
			if !errors.Is(err, l7.ErrMalformed) && !errors.Is(err, l7.ErrTooLong) {
				t.Errorf("%s cut at %d: %v, want a malformed error", name, cut, err)
			}
		}
	}
}
