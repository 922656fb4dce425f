package tls

import (
	"bytes"
	"testing"
)

// headBodies are ClientHello bodies around the fields decodeHead reads:
// session ids, suites and compression methods of every kind of length,
// including lengths that run past the body, and bad versions.
func headBodies() [][]byte {
	var bs [][]byte
	ext := vec16(sniExt("a.test"))
	for _, sid := range []int{0, 1, 32, 33, 255} {
		for _, cs := range [][]byte{suites, vec16(), vec16([]byte{1}), be16(400)} {
			for _, cm := range [][]byte{nullComp, vec8(), {9, 0}} {
				for _, ver := range []int{0x0303, 0x0301, 0x0203} {
					b := cat(be16(ver), random32, []byte{byte(sid)}, bytes.Repeat([]byte{7}, min(sid, 32)), cs, cm, ext)
					for len(b) < minHelloBody {
						b = append(b, 0)
					}
					bs = append(bs, b)
					for cut := minHelloBody; cut < len(b); cut += 3 {
						bs = append(bs, b[:cut])
					}
				}
			}
		}
	}
	return bs
}

// TestDecodeHead checks the in-place reading of a hello's head against
// the cursor's: the same error, or the same version and position.
func TestDecodeHead(t *testing.T) {
	for _, b := range headBodies() {
		c1 := cursor{data: b, left: len(b), rem: len(b)}
		c2 := c1
		var h1, h2 fields
		err1 := decodeHead(b, &c1, &h1)
		err2 := decodeHeadSplit(&c2, &h2)
		if err1 != err2 {
			t.Fatalf("%x: decodeHead: %v, decodeHeadSplit: %v", b, err1, err2)
		}
		if err1 == nil && (c1.off != c2.off || c1.left != c2.left || c1.rem != c2.rem || h1.version != h2.version) {
			t.Fatalf("%x: decodeHead left %+v %#x, decodeHeadSplit %+v %#x", b, c1, h1.version, c2, h2.version)
		}
	}
}
