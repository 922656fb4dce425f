package kafka

import (
	"encoding/binary"
	"sync"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Lazy deny summaries. Produce and Fetch, the requests a client sends most,
// are framed whole, and their records (topics with their partitions) would
// be written for every request while only a denied one needs them. The
// parser writes the summary's header alone, with flagLazy, and leaves the
// request in the frame's Sub: empty, its capacity the request from its size
// field on. Deny, called before the parser's next call with the input as it
// was (the proxy's order, and l7.Frame's: views stay valid until then),
// walks the request again with the same fast walker, which this time
// writes the records, exactly those the parser would have written (tests
// and FuzzParse compare both ways).

// lazyRecords appends to dst a summary header and the records of the
// request held in f.Sub's capacity, a Produce or Fetch whose summary is s.
// It returns dst, the offset in it where what it appended starts, the
// records and the flags the walk set, or ok false (and dst as it was) when
// f.Sub does not hold such a request.
func lazyRecords(dst []byte, f *l7.Frame, s *summary) (out []byte, mark int, recs []byte, flags byte, ok bool) {
	msg := f.Sub[:cap(f.Sub)]
	if len(f.Sub) != 0 || len(msg) < minRequest || (s.key != keyProduce && s.key != keyFetch) ||
		int(int32(binary.BigEndian.Uint32(msg))) != len(msg)-4 ||
		int16(binary.BigEndian.Uint16(msg[4:])) != s.key ||
		int16(binary.BigEndian.Uint16(msg[6:])) != s.ver ||
		int32(binary.BigEndian.Uint32(msg[8:])) != s.corr {
		return dst, 0, nil, 0, false
	}
	idLen := int(int16(binary.BigEndian.Uint16(msg[12:])))
	hdrEnd := minRequest + max(idLen, 0)
	if idLen < -1 || hdrEnd > len(msg) || requestSchema(s.key, s.ver) == nil {
		return dst, 0, nil, 0, false
	}
	mark = len(dst)
	// A parser of Deny's own: the walker writes the records through it,
	// at the end of dst, bounded as the parser's own summary (the Verb
	// and header counted: sumBase).
	p := rewalkers.Get().(*Parser)
	p.sum = append(dst, make([]byte, sumHeader)...)
	p.vlen = mark
	p.sumBase = mark - len(f.Verb)
	var w walker
	w.r.b, w.r.pos, w.r.end, w.r.flex = msg, hdrEnd, len(msg), isFlexible(s.key, s.ver)
	w.key, w.ver, w.p, w.resum = s.key, s.ver, p, true
	err := error(nil)
	if w.r.flex {
		err = w.r.tags()
	}
	fast := false
	if err == nil {
		fast, err = w.fastWalk()
	}
	out = p.sum
	p.sum = nil // dst is the caller's
	rewalkers.Put(p)
	if err != nil || !fast || w.r.pos != w.r.end {
		return dst, 0, nil, 0, false
	}
	return out, mark, out[mark+sumHeader:], out[mark+sumHeader-1], true
}

// rewalkers holds the parsers lazyRecords walks requests with: only their
// summary fields are used (a walker with resum set touches nothing else).
var rewalkers = sync.Pool{New: func() any { return new(Parser) }}
