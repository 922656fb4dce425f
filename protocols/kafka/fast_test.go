package kafka

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// walkOutcome is what walking a request body leaves: the error, the
// reader's position (when there is no error), the frame's fields and the parser's summary,
// resolved names and Fetch session.
type walkOutcome struct {
	err               error
	pos               int
	resources         [][]byte
	noReply, overflow bool
	sum, res          []byte
	sessID, sessEpoch int32
	sess              session
	nameOff, nameLen  int
	idOff, rec        int
	nparts            uint32
	inTopic           bool
	sessBuf           []byte
}

// walkBody walks the body of msg, a whole Produce or Fetch request, with
// the specialised walker (fast) or the interpreter; ok is false when msg is
// not such a request with a body to walk.
func walkBody(msg []byte, fast bool) (o walkOutcome, ok bool) {
	if len(msg) < minRequest {
		return o, false
	}
	key := int16(binary.BigEndian.Uint16(msg[4:]))
	ver := int16(binary.BigEndian.Uint16(msg[6:]))
	idLen := int(int16(binary.BigEndian.Uint16(msg[12:])))
	hdrEnd := minRequest + max(idLen, 0)
	if (key != keyProduce && key != keyFetch) || ver < 0 || idLen < -1 || hdrEnd > len(msg) || requestSchema(key, ver) == nil {
		return o, false
	}
	p := NewParser()
	var f l7.Frame
	f.Reset(l7.DirRequest)
	w := walker{r: reader{b: msg, pos: hdrEnd, end: len(msg), flex: isFlexible(key, ver)}, key: key, ver: ver, p: p, f: &f}
	if w.r.flex {
		if err := w.r.tags(); err != nil {
			return o, false
		}
	}
	if fast {
		var did bool
		did, o.err = w.fastWalk()
		if !did {
			return o, false
		}
	} else {
		o.err = w.walk(requestSchema(key, ver), 0)
	}
	if o.err == nil {
		o.pos = w.r.pos // after an error the request is refused: pos is moot
	}
	if f.Resource != nil {
		o.resources = append(o.resources, bytes.Clone(f.Resource))
	}
	for _, r := range f.More[:f.NMore] {
		o.resources = append(o.resources, bytes.Clone(r))
	}
	o.noReply, o.overflow = f.NoReply, f.Overflow
	o.sum, o.res = bytes.Clone(p.sum), bytes.Clone(p.res)
	o.sessID, o.sessEpoch = w.sessID, w.sessEpoch
	o.sess, o.sessBuf = p.sess, bytes.Clone(p.sess.buf)
	o.sess.buf = nil
	o.nameOff, o.nameLen, o.idOff, o.rec, o.nparts, o.inTopic = w.nameOff, w.nameLen, w.idOff, w.rec, w.nparts, w.inTopic
	return o, true
}

func checkFastWalk(t *testing.T, msg []byte) {
	t.Helper()
	fast, ok := walkBody(msg, true)
	if !ok {
		return
	}
	slow, _ := walkBody(msg, false)
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%x:\nfast %+v\nslow %+v", msg, fast, slow)
	}
}

// fastSeeds are Produce and Fetch requests of every version, with and
// without topics, sessions and acks, and every prefix of some.
func fastSeeds() [][]byte {
	var ms [][]byte
	for v := int16(0); v <= apis[keyProduce].maxVersion; v++ {
		ms = append(ms, produce(v, 1, 1, "orders", "audit"), produce(v, 2, 0, "x"), produce(v, 3, -1))
	}
	for v := int16(0); v <= apis[keyFetch].maxVersion; v++ {
		ms = append(ms, fetch(v, 1, 0, 0, "orders", "audit"), fetch(v, 2, 7, 3, "x"), fetch(v, 3, 0, -1))
	}
	var out [][]byte
	for i, m := range ms {
		out = append(out, m)
		if i%3 == 0 {
			for cut := minRequest; cut < len(m); cut++ {
				out = append(out, m[:cut])
			}
		}
	}
	return out
}

// TestFastWalk checks the specialised Produce and Fetch walkers against
// the interpreter on requests of every version and their prefixes.
func TestFastWalk(t *testing.T) {
	n := 0
	for _, m := range fastSeeds() {
		if _, ok := walkBody(m, true); ok {
			n++
		}
		checkFastWalk(t, m)
	}
	if n < 100 {
		t.Fatalf("only %d requests walked", n)
	}
}

// FuzzFastWalk is TestFastWalk on any message.
func FuzzFastWalk(f *testing.F) {
	for _, m := range fastSeeds() {
		f.Add(m)
	}
	reqs, _ := corpus(f)
	for len(reqs) >= 4 {
		n := min(len(reqs), 4+int(binary.BigEndian.Uint32(reqs)))
		f.Add(reqs[:n])
		reqs = reqs[n:]
	}
	f.Fuzz(func(t *testing.T, msg []byte) { checkFastWalk(t, msg) })
}
