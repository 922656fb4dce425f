package tls

import (
	"bytes"
	"strings"
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

// extBlocks are extension blocks around what extensionsFlat reads: good
// and bad server_name and ALPN extensions, duplicates, names of every
// kind, lengths that run past the block, and every prefix of each.
func extBlocks() [][]byte {
	long := strings.Repeat("a", 63)
	whole := [][]byte{
		cat(sniExt("Example.COM."), alpnExt("h2", "http/1.1")),
		cat(ext(0x0a0a), sniExt("a.test"), ext(0x002b, []byte{2, 3, 4}), alpnExt("x")),
		cat(sniExt("a.test"), sniExt("b.test")),
		cat(alpnExt("h2"), alpnExt("h2")),
		sniExt("a.test", "b.test"),
		ext(extServerName, vec16(hostEntry(1, "other"), hostEntry(0, "a.test"))),
		ext(extServerName, vec16()),
		ext(extServerName, be16(9), hostEntry(0, "a")),
		ext(extServerName, vec16(hostEntry(0, ""))),
		ext(extALPN, vec16()),
		ext(extALPN, vec16(vec8())),
		ext(extALPN, be16(7), vec8([]byte("h2"))),
		sniExt(long + "." + long),
		sniExt(long + "a.b"),
		sniExt("a..b"), sniExt(".a"), sniExt("a b"), sniExt("."), sniExt("a_b-c.D9"),
		sniExt(strings.Repeat("a.", 127)),
		sniExt(strings.Repeat("a.", 126) + "bb"),
		alpnExt(strings.Repeat("p", 255)),
		{0, 0, 0},
		{0, 0, 0, 9, 1},
	}
	var bs [][]byte
	for _, b := range whole {
		for cut := 0; cut <= len(b); cut++ {
			bs = append(bs, b[:cut])
		}
	}
	return bs
}

// TestExtensionsFlat checks the in-place reading of the extensions
// against the cursor's: the same error, server name and ALPN.
func TestExtensionsFlat(t *testing.T) {
	for _, b := range extBlocks() {
		checkExtensionsFlat(t, b)
	}
}

func checkExtensionsFlat(t *testing.T, b []byte) {
	t.Helper()
	var p1, p2 Parser
	var h1, h2 fields
	err1 := p1.extensionsFlat(b, &h1)
	c := cursor{data: b, left: len(b), rem: len(b)}
	err2 := p2.extensions(&c, &h2)
	if err1 != err2 {
		t.Fatalf("%x: extensionsFlat: %v, extensions: %v", b, err1, err2)
	}
	if err1 == nil && (!bytes.Equal(h1.sni, h2.sni) || !bytes.Equal(h1.alpn, h2.alpn) || (h1.sni == nil) != (h2.sni == nil) || (h1.alpn == nil) != (h2.alpn == nil)) {
		t.Fatalf("%x: extensionsFlat %q %q, extensions %q %q", b, h1.sni, h1.alpn, h2.sni, h2.alpn)
	}
}

// FuzzExtensionsFlat is TestExtensionsFlat on any extension block.
func FuzzExtensionsFlat(f *testing.F) {
	for _, b := range extBlocks() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkExtensionsFlat(t, b) })
}
