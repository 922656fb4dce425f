package proxy

import (
	"sync"

	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// What an idle connection need not hold: each side's parse frame and the
// request side's flow key (some 1.8 KiB together) are taken from pools when
// a side works and given back when it parks or the session ends
// (releaseSide), so that a parked connection holds neither. A side takes
// them again at its first message after resuming: one pool Get each, not
// one per message.

// framePool holds parse frames (l7.Frame), zeroed.
var framePool = sync.Pool{New: func() any { return new(l7.Frame) }}

// keyPool holds flow keys (report.Key), zeroed.
var keyPool = sync.Pool{New: func() any { return new(report.Key) }}

// requestFrame returns the request side's frame, taken from framePool when
// it holds none. Only the request side's goroutine calls it.
func (s *session) requestFrame() *l7.Frame {
	if s.reqFrame == nil {
		s.reqFrame = framePool.Get().(*l7.Frame)
	}
	return s.reqFrame
}

// replyFrame returns the reply side's frame, taken from framePool when it
// holds none. Only the reply side's goroutine calls it.
func (s *session) replyFrame() *l7.Frame {
	if s.repFrame == nil {
		s.repFrame = framePool.Get().(*l7.Frame)
	}
	return s.repFrame
}

// flowKey returns the session's flow key, taken from keyPool and filled
// with the connection's fields (addresses, port, direction, mode,
// protocol, destination name) when it holds none. Only the goroutine that
// runs the request side (or sets the connection up) calls it.
func (s *session) flowKey() *report.Key {
	if s.key == nil {
		k := keyPool.Get().(*report.Key)
		k.SetConn(&s.conn, s.local())
		k.Proto = s.protoID
		k.SetDstName(s.dstName)
		s.key = k
	}
	return s.key
}

// putFrame gives *f back to framePool, zeroed (it may hold views of the
// connection's bytes), and clears *f.
func putFrame(f **l7.Frame) {
	if *f == nil {
		return
	}
	**f = l7.Frame{}
	framePool.Put(*f)
	*f = nil
}

// releaseSide gives back what the side (req: the request side) holds only
// while it works: its frame and, for the request side, the flow key. The
// side's goroutine calls it before parking, when it still owns them.
func (s *session) releaseSide(req bool) {
	if !req {
		putFrame(&s.repFrame)
		return
	}
	putFrame(&s.reqFrame)
	if k := s.key; k != nil {
		*k = report.Key{}
		keyPool.Put(k)
		s.key = nil
	}
}
