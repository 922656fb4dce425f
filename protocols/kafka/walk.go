package kafka

import (
	"bytes"
	"encoding/binary"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// maxSchemaDepth bounds the nesting of schemas (a fixed property of the
// tables in schema.go, checked by a test); the walker recurses no deeper.
const maxSchemaDepth = 4

// walker reads a body described by a schema. In a request it adds the
// topics it finds to the frame, records topics, partitions and group ids in
// the parser's deny summary and follows Fetch sessions; in a Metadata reply
// it learns topic ids.
type walker struct {
	r     reader
	ver   int16
	key   int16
	p     *Parser
	f     *l7.Frame // nil when learning from a reply
	learn bool
	// nosum: write no records to the deny summary (a Produce or Fetch
	// parsed; Deny writes them later). resum: write only them (Deny
	// walking a request again: no frame, session or topic table).
	nosum, resum bool

	// The topic being read.
	inTopic          bool
	nameOff, nameLen int // nameLen -1: no name (null or absent)
	idOff            int // -1: no id
	rec              int // offset in p.sum of the topic record's partition count, -1 before it is written
	nparts           uint32

	// Fetch sessions (Fetch v7+): the request's session id and epoch.
	sessID, sessEpoch int32
}

func (w *walker) walk(fs []field, depth int) error {
	if depth > maxSchemaDepth {
		return errBadLength
	}
	for i := range fs {
		fd := &fs[i]
		if !fd.in(w.ver) {
			continue
		}
		if err := w.field(fd, depth); err != nil {
			return err
		}
	}
	if w.r.flex {
		return w.r.tags()
	}
	return nil
}

func (w *walker) field(fd *field, depth int) error {
	r := &w.r
	switch fd.k {
	case kI8, kBool:
		return r.skip(1)
	case kI16:
		return r.skip(2)
	case kI32:
		return r.skip(4)
	case kI64:
		return r.skip(8)
	case kUUID:
		return r.skip(16)
	case kStr, kNStr:
		_, _, err := r.str(fd.k == kNStr)
		return err
	case kBytes, kNBytes:
		return r.bytes(fd.k == kNBytes)
	case kI32Arr:
		n, err := r.array(false)
		if err != nil {
			return err
		}
		return r.skip(4 * n)
	case kArr, kNArr, kTopics, kNTopics:
		n, err := r.array(fd.k == kNArr || fd.k == kNTopics)
		if err != nil {
			return err
		}
		topics := fd.k == kTopics || fd.k == kNTopics
		for range n {
			start := r.pos
			if topics {
				w.beginTopic()
			}
			if err := w.walk(fd.sub, depth+1); err != nil {
				return err
			}
			if topics {
				w.endTopic()
			}
			if r.pos == start {
				return errEmptyElement
			}
		}
		return nil
	case kName, kNName:
		off, n, err := r.str(fd.k == kNName)
		if err != nil {
			return err
		}
		w.nameOff, w.nameLen = off, n
		return nil
	case kID:
		if err := r.need(16); err != nil {
			return err
		}
		w.idOff = r.pos
		r.pos += 16
		return nil
	case kPart:
		v, err := r.i32()
		if err != nil {
			return err
		}
		w.partition(v)
		return nil
	case kParts:
		n, err := r.array(false)
		if err != nil {
			return err
		}
		if err := r.need(4 * n); err != nil {
			return err
		}
		for range n {
			v, _ := r.i32()
			w.partition(v)
		}
		return nil
	case kNames:
		n, err := r.array(false)
		if err != nil {
			return err
		}
		for range n {
			w.beginTopic()
			off, l, err := r.str(false)
			if err != nil {
				return err
			}
			w.nameOff, w.nameLen = off, l
			w.endTopic()
		}
		return nil
	case kGroup:
		off, n, err := r.str(false)
		if err != nil {
			return err
		}
		w.group(off, n)
		return nil
	case kGroups:
		n, err := r.array(false)
		if err != nil {
			return err
		}
		for range n {
			off, l, err := r.str(false)
			if err != nil {
				return err
			}
			w.group(off, l)
		}
		return nil
	case kAcks:
		v, err := r.i16()
		if err != nil {
			return err
		}
		if v == 0 && w.f != nil {
			w.f.NoReply = true
		}
		return nil
	case kSessID:
		v, err := r.i32()
		w.sessID = v
		return err
	case kSessEp:
		v, err := r.i32()
		if err != nil {
			return err
		}
		w.sessEpoch = v
		if !w.learn {
			w.p.sessStart(w.sessID, v)
		}
		return nil
	case kKeyType:
		v, err := r.i8()
		if err == nil && v == 1 {
			w.p.sumFlag(flagTxn)
		}
		return err
	case kTxnID:
		_, n, err := r.str(true)
		if err == nil && n >= 0 {
			w.p.sumFlag(flagTxn)
		}
		return err
	}
	return errBadLength // a reply-only kind in a request schema
}

func (w *walker) beginTopic() {
	w.inTopic = true
	w.nameOff, w.nameLen = 0, -1
	w.idOff = -1
	w.rec = -1
	w.nparts = 0
}

// topicRecord writes the current topic's record to the deny summary, once.
func (w *walker) topicRecord() {
	if w.learn || w.rec >= 0 {
		return
	}
	p := w.p
	var name []byte
	if w.nameLen > 0 {
		name = w.r.b[w.nameOff : w.nameOff+w.nameLen]
	}
	var flags byte
	if w.nameLen >= 0 {
		flags |= recName
	}
	if w.idOff >= 0 {
		flags |= recID
	}
	size := 1 + 2 + len(name) + 1 + 4
	if w.idOff >= 0 {
		size += 16
	}
	if len(name) > 0xffff || !p.sumRoom(size) {
		w.rec = 0 // not recorded; partitions are dropped too
		return
	}
	s := append(p.sum, recTopic)
	s = binary.BigEndian.AppendUint16(s, uint16(len(name)))
	s = append(s, name...)
	s = append(s, flags)
	if w.idOff >= 0 {
		s = append(s, w.r.b[w.idOff:w.idOff+16]...)
	}
	w.rec = len(s)
	s = append(s, 0, 0, 0, 0)
	p.sum = s
}

func (w *walker) partition(v int32) {
	if w.learn || w.nosum || !w.inTopic {
		return
	}
	if w.rec < 0 {
		w.topicRecord()
	}
	if w.rec == 0 {
		return
	}
	if !w.p.sumRoom(4) {
		return
	}
	w.p.sum = binary.BigEndian.AppendUint32(w.p.sum, uint32(v))
	w.nparts++
}

func (w *walker) endTopic() {
	w.inTopic = false
	var name, id []byte
	if w.nameLen >= 0 {
		name = w.r.b[w.nameOff : w.nameOff+w.nameLen : w.nameOff+w.nameLen]
	}
	if w.idOff >= 0 {
		id = w.r.b[w.idOff : w.idOff+16 : w.idOff+16]
	}
	if w.learn {
		if name != nil && id != nil {
			w.p.ids.insert(id, name)
		}
		return
	}
	if w.nosum {
		if name != nil || (id != nil && !isZeroID(id)) {
			if w.key == keyFetch && w.ver >= 7 {
				w.p.sessAdd(name, id)
			}
			w.p.addTopic(w.f, name, id)
		}
		return
	}
	if w.rec < 0 {
		w.topicRecord()
	}
	if w.rec > 0 {
		binary.BigEndian.PutUint32(w.p.sum[w.rec:], w.nparts)
	}
	if w.resum {
		return
	}
	if name == nil && (id == nil || isZeroID(id)) {
		return // names no topic
	}
	if w.key == keyFetch && w.ver >= 7 {
		w.p.sessAdd(name, id)
	}
	w.p.addTopic(w.f, name, id)
}

func (w *walker) group(off, n int) {
	if w.learn || w.nosum {
		return
	}
	p := w.p
	if n > 0xffff || !p.sumRoom(3+n) {
		return
	}
	s := append(p.sum, recGroup)
	s = binary.BigEndian.AppendUint16(s, uint16(n))
	p.sum = append(s, w.r.b[off:off+n]...)
}

func isZeroID(id []byte) bool { return bytes.Equal(id, zeroID[:]) }

var zeroID [16]byte
