package kafka

import (
	"encoding/binary"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// maxDenyReason bounds the reason a deny reply carries in its
// error_message fields, in bytes.
const maxDenyReason = 128

// summary is a deny summary (see parser.go), validated.
type summary struct {
	key, ver int16
	corr     int32
	flags    byte
	recs     []byte // the records
}

// summaryOf finds the summary the parser left behind the frame's Verb.
func summaryOf(f *l7.Frame) (summary, bool) {
	tail := f.Verb[len(f.Verb):cap(f.Verb)]
	if len(tail) < sumHeader || tail[0] != sumMagic0 || tail[1] != sumMagic1 ||
		tail[2] != sumMagic2 || tail[3] != sumMagic3 {
		return summary{}, false
	}
	n := int(binary.BigEndian.Uint32(tail[4:]))
	if n < sumHeader || n > len(tail) {
		return summary{}, false
	}
	recs := tail[sumHeader:n:n]
	for i := 0; i < len(recs); {
		if i = recNext(recs, i); i < 0 {
			return summary{}, false
		}
	}
	return summary{
		key:   int16(binary.BigEndian.Uint16(tail[8:])),
		ver:   int16(binary.BigEndian.Uint16(tail[10:])),
		corr:  int32(binary.BigEndian.Uint32(tail[12:])),
		flags: tail[16],
		recs:  recs,
	}, true
}

// Deny appends the response a broker would send to the denied request f
// had it refused it: the API's own response for the request's version,
// with its correlation id and response header, carrying
// TOPIC_AUTHORIZATION_FAILED for every topic and partition the request
// named (GROUP_, CLUSTER_ or TRANSACTIONAL_ID_AUTHORIZATION_FAILED, or
// SASL_AUTHENTICATION_FAILED, for the APIs that name no topic) and
// "bulkhead: <reason>" where the response has an error message. Topic
// names and group ids are echoed as the request sent them: the client
// matches the response by them.
//
// f should be a request frame this package's Parser returned, before the
// parser's next call and with the parser's input unchanged: the parser
// keeps what Deny needs beside the frame's Verb and, for Produce and
// Fetch, Deny reads the topics and partitions from the request itself,
// through the frame's Sub (see lazy.go). For any other frame Deny answers the API, version and correlation
// id in its Args (see APIKeyVersion) without echoing topics or groups. For
// a request the server would not answer (Produce with acks=0: NoReply) and
// for an API or version without a deny reply (README.md lists them), Deny
// appends nothing.
func Deny(dst []byte, f *l7.Frame, reason string) []byte {
	if f == nil || f.NoReply {
		return dst
	}
	s, ok := summaryOf(f)
	if !ok {
		// Not the frame the parser just returned: what Args says, with
		// no topic or group to echo.
		key, ver := APIKeyVersion(f)
		s = summary{key: key, ver: ver, corr: CorrelationID(f)}
	}
	rs := replySchemaFor(s.key, s.ver)
	if rs == nil {
		return dst
	}
	mark := -1
	if s.flags&(flagLazy|flagIncremental) == flagLazy {
		// Produce or Fetch: the records are written now, after dst's
		// bytes, and the reply after them is moved over them below.
		if out, m, recs, fl, ok := lazyRecords(dst, f, &s); ok {
			dst, mark, s.recs = out, m, recs
			s.flags |= fl &^ flagLazy
		}
	}
	flex := isFlexible(s.key, s.ver)
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = appendI32(dst, s.corr)
	if flex && s.key != keyApiVersions { // ApiVersions replies keep header v0
		dst = append(dst, 0) // no tagged fields
	}
	b := builder{s: s, flex: flex, code: rs.code, reason: reason}
	switch {
	case s.key == keyInitProducerID && s.flags&flagTxn != 0,
		s.key == keyFindCoordinator && s.flags&flagTxn != 0:
		b.code = errTransactionalIDAuthorizationFail
	case s.key == keyFetch && s.flags&flagIncremental != 0:
		b.top = errFetchSessionIDNotFound
		b.noTopics = true
	}
	dst = b.build(dst, rs.fields, 0, len(s.recs), 0, 0)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	if mark >= 0 {
		dst = dst[:mark+copy(dst[mark:], dst[start:])]
	}
	return dst
}

// builder writes a deny reply body from a schema and a summary.
type builder struct {
	s        summary
	flex     bool
	code     int16 // the deny error code
	top      int16 // the top-level error of an incremental fetch
	noTopics bool
	reason   string
}

// Record iteration. A scope [from, to) of the records holds the topics of
// the request (or of one group); a topic record at t has its partitions
// after it.

func (b *builder) next(i int) int { return recNext(b.s.recs, i) }

// recNext returns the offset after the record of r at i, or -1 when it is
// cut or of an unknown type.
func recNext(r []byte, i int) int {
	if i < 0 || i+3 > len(r) {
		return -1
	}
	n := int(binary.BigEndian.Uint16(r[i+1:]))
	switch r[i] {
	case recGroup:
		if i+3+n > len(r) {
			return -1
		}
		return i + 3 + n
	case recTopic:
		j := i + 3 + n
		if j+1 > len(r) {
			return -1
		}
		if r[j]&recID != 0 {
			j += 16
		}
		j++
		if j+4 > len(r) {
			return -1
		}
		c := int(binary.BigEndian.Uint32(r[j:]))
		j += 4
		if c > (len(r)-j)/4 {
			return -1
		}
		return j + 4*c
	}
	return -1
}

// count returns how many records of type t start in [from, to), stopping
// at a group record when t is a topic.
func (b *builder) count(t byte, from, to int) int {
	n := 0
	for i := from; i < to; {
		if b.s.recs[i] == recGroup && t == recTopic {
			break
		}
		if b.s.recs[i] == t {
			n++
		}
		j := b.next(i)
		if j < 0 || j > to {
			break
		}
		i = j
	}
	return n
}

// nextOf returns the offset of the next record of type t at or after i
// (stopping at a group record when t is a topic), or to.
func (b *builder) nextOf(t byte, i, to int) int {
	for i < to {
		if b.s.recs[i] == t {
			return i
		}
		if b.s.recs[i] == recGroup && t == recTopic {
			return to
		}
		j := b.next(i)
		if j < 0 {
			return to
		}
		i = j
	}
	return to
}

// topic returns the parts of the topic record at i.
func (b *builder) topic(i int) (name []byte, hasName bool, id []byte, parts []byte) {
	r := b.s.recs
	n := int(binary.BigEndian.Uint16(r[i+1:]))
	name = r[i+3 : i+3+n]
	j := i + 3 + n
	fl := r[j]
	j++
	if fl&recID != 0 {
		id = r[j : j+16]
		j += 16
	}
	c := int(binary.BigEndian.Uint32(r[j:]))
	j += 4
	return name, fl&recName != 0, id, r[j : j+4*c]
}

// build writes fields; from..to is the scope of topics, t the current
// topic record (or group record), part the current partition.
func (b *builder) build(dst []byte, fs []field, from, to, t int, part int32) []byte {
	for i := range fs {
		fd := &fs[i]
		if !fd.in(b.s.ver) {
			continue
		}
		dst = b.field(dst, fd, from, to, t, part)
	}
	if b.flex {
		dst = append(dst, 0) // no tagged fields
	}
	return dst
}

func (b *builder) field(dst []byte, fd *field, from, to, t int, part int32) []byte {
	switch fd.k {
	case kI8, kBool:
		return append(dst, byte(fd.def))
	case kI16:
		return appendI16(dst, int16(fd.def))
	case kI32:
		return appendI32(dst, int32(fd.def))
	case kI64:
		return appendI64(dst, fd.def)
	case kUUID:
		return append(dst, zeroID[:]...)
	case kStr:
		return appendLen(dst, 0, false, b.flex)
	case kBytes:
		return appendLen(dst, 0, true, b.flex)
	case kNStr:
		return appendLen(dst, -1, false, b.flex)
	case kNBytes:
		return appendLen(dst, -1, true, b.flex)
	case kEmpty:
		return appendLen(dst, 0, true, b.flex)
	case kNull:
		return appendLen(dst, -1, true, b.flex)
	case kNullStru:
		return append(dst, 0xff)
	case kErr:
		return appendI16(dst, b.code)
	case kErrTop:
		return appendI16(dst, b.top)
	case kErrEmpty:
		if b.count(recTopic, from, to) == 0 {
			return appendI16(dst, errGroupAuthorizationFailed)
		}
		return appendI16(dst, 0)
	case kAuthOps:
		return appendI32(dst, -1<<31)
	case kMsg:
		return b.message(dst)
	case kRTopics:
		if b.noTopics {
			return appendLen(dst, 0, true, b.flex)
		}
		dst = appendLen(dst, b.count(recTopic, from, to), true, b.flex)
		for i := b.nextOf(recTopic, from, to); i < to; i = b.nextOf(recTopic, b.next(i), to) {
			dst = b.build(dst, fd.sub, from, to, i, 0)
		}
		return dst
	case kRParts:
		_, _, _, parts := b.topic(t)
		dst = appendLen(dst, len(parts)/4, true, b.flex)
		for k := 0; k+4 <= len(parts); k += 4 {
			dst = b.build(dst, fd.sub, from, to, t, int32(binary.BigEndian.Uint32(parts[k:])))
		}
		return dst
	case kRGroups:
		dst = appendLen(dst, b.count(recGroup, from, to), true, b.flex)
		for i := b.nextOf(recGroup, from, to); i < to; {
			j := b.next(i)
			end := b.nextOf(recGroup, j, to)
			dst = b.build(dst, fd.sub, j, end, i, 0)
			i = end
		}
		return dst
	case kRName, kRNName:
		name, has, _, _ := b.topic(t)
		if !has && fd.k == kRNName {
			return appendLen(dst, -1, false, b.flex)
		}
		dst = appendLen(dst, len(name), false, b.flex)
		return append(dst, name...)
	case kRID:
		_, _, id, _ := b.topic(t)
		if id == nil {
			return append(dst, zeroID[:]...)
		}
		return append(dst, id...)
	case kRPart:
		return appendI32(dst, part)
	case kRGroup:
		r := b.s.recs
		n := int(binary.BigEndian.Uint16(r[t+1:]))
		dst = appendLen(dst, n, false, b.flex)
		return append(dst, r[t+3:t+3+n]...)
	}
	return dst
}

// message writes "bulkhead: <reason>" as a nullable string, keeping only
// printable ASCII of the reason, at most maxDenyReason bytes of it.
func (b *builder) message(dst []byte) []byte {
	const prefix = "bulkhead: "
	n := 0
	for i := 0; i < len(b.reason) && n < maxDenyReason; i++ {
		if c := b.reason[i]; c >= ' ' && c < 0x7f {
			n++
		}
	}
	if n == 0 {
		const text = prefix + "request denied by policy"
		dst = appendLen(dst, len(text), false, b.flex)
		return append(dst, text...)
	}
	dst = appendLen(dst, len(prefix)+n, false, b.flex)
	dst = append(dst, prefix...)
	for i, k := 0, 0; i < len(b.reason) && k < n; i++ {
		if c := b.reason[i]; c >= ' ' && c < 0x7f {
			dst = append(dst, c)
			k++
		}
	}
	return dst
}
