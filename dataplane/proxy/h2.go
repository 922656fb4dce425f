package proxy

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// maxDeniedStreams bounds the denied streams of one multiplexed (HTTP/2)
// connection whose later frames the proxy still drops: streams the client
// has not ended yet, or whose refusal (RST_STREAM) the server has not sent
// yet. When it is full, a stream only waiting for the server's refusal is
// forgotten (its RST_STREAM then reaches the client, which ignores it on a
// closed stream); when none is, the connection is closed as over a limit.
const maxDeniedStreams = 64

// Errors of multiplexed connections; both count as over a limit.
var (
	errStreams = fmt.Errorf("%w: too many denied streams still open", errDenials)
	// errTrailers: the client sent, on a denied stream, a header block
	// that changed the HPACK table; it can be neither forwarded nor
	// dropped without desynchronising the server's decoder.
	errTrailers = fmt.Errorf("%w: indexed header block on a denied stream", errDenials)
	// errAnswered: the server answered a stream it should have refused.
	errAnswered = errors.New("proxy: server answered a refused stream")
	// errPipelined: an HTTP/1.1 request before an h2c upgrade was denied
	// while earlier ones waited for their responses (no deny FIFO there).
	errPipelined = fmt.Errorf("%w: denied pipelined HTTP/1.1 request on an http2 connection", errDenials)
)

// h2State is the state of a multiplexed connection (the parser is an
// l7.Multiplexer): requests and replies are not paired; a denied stream is
// answered at once on the client's side, its header block is forwarded
// rewritten so that the server refuses it (Multiplexer.Reject), and the
// frames that follow on it are dropped in both directions.
type h2State struct {
	mux l7.Multiplexer

	// Owned by the request goroutine: Reject's output, and the frames for
	// the client (deny replies, window credit).
	out, toClient []byte

	// h1drop (request goroutine): the last request frame, of a phase
	// without streams (HTTP/1.1 before an h2c upgrade), was denied; the
	// stream-less bytes skipped after it are its body, dropped.
	h1drop bool

	// Owned by the reply goroutine: the server's preface went out.
	serverReady bool

	// n mirrors len of the denied set, so that frames are checked
	// without the lock while no stream is denied.
	n atomic.Int32

	// mu guards the fields below. Lock order: wmu, then mu.
	mu sync.Mutex
	// ready: the server's preface (its first SETTINGS frame) was written
	// to the client; before, frames for the client wait in held.
	ready  bool
	held   []byte
	denied [maxDeniedStreams]deniedStream
	nd     int
}

// deniedStream is a denied stream whose frames are still dropped: client
// is set until the client ended its side, server until the server
// refused it.
type deniedStream struct {
	id             uint32
	client, server bool
}

// startH2 sets s.h2 when the protocol's parser is a Multiplexer.
func (s *session) startH2() {
	if m, ok := s.parser.(l7.Multiplexer); ok {
		s.h2 = &h2State{mux: m}
	}
}

// h2Requests is requests for a multiplexed connection: it judges each
// request (a header block opening a stream), forwards the allowed ones and
// the other frames, and for a denied one writes Reject's rewrite upstream
// and the deny reply to the client; frames of denied streams are dropped
// and the connection window they used is given back to the client. It
// allocates nothing once its scratch buffers have grown.
func (s *session) h2Requests(buf []byte) (consumed, need int, err error) {
	if pol := s.p.engine.Load(); pol != nil && pol != s.conn.Policy() {
		s.conn.Refresh(pol)
		s.refreshKey()
	}
	h := s.h2
	f := s.requestFrame()
	var off, start, credit int
	for off < len(buf) {
		s.pmu.Lock()
		op, n, perr := s.parser.Parse(l7.DirRequest, buf[off:], f)
		if need, err = parsed(op, n, len(buf)-off, perr); need > 0 || err != nil {
			s.pmu.Unlock()
			break
		}
		st := h.mux.Stream(l7.DirRequest)
		if op == l7.OpSkip {
			s.pmu.Unlock()
			if st.ID == 0 && h.h1drop {
				// The body of a denied HTTP/1.1 request.
				if werr := s.write(buf[start:off]); werr != nil {
					return off, 0, werr
				}
				start = off + n
			} else if st.ID != 0 && h.n.Load() > 0 && h.drop(st.ID, st.End, true) {
				if st.Headers && st.Indexed {
					err = errTrailers
					break
				}
				if werr := s.write(buf[start:off]); werr != nil {
					return off, 0, werr
				}
				credit += st.Flow
				start = off + n
			}
			off += n
			continue
		}
		h.h1drop = false
		d := s.conn.Message(f)
		s.recordMessage(f, d, n)
		if d.Verdict != enforce.Deny || !d.Enforced {
			s.pmu.Unlock()
			off += n
			continue
		}
		if st.ID == 0 {
			// HTTP/1.1 before an h2c upgrade: answered at once, which
			// is right only when no earlier request waits for its
			// response.
			if st.Waiting {
				s.pmu.Unlock()
				err = errPipelined
				break
			}
			h.toClient = s.proto.Deny(h.toClient[:0], f, d.Reason.String())
			if s.observer != nil {
				s.observer.Denied(f)
			}
			s.pmu.Unlock()
			if werr := s.write(buf[start:off]); werr != nil {
				return off, 0, werr
			}
			if werr := s.h2Send(h.toClient, true); werr != nil {
				return off, 0, werr
			}
			off += n
			start = off
			h.h1drop = true
			continue
		}
		h.toClient = s.proto.Deny(h.toClient[:0], f, d.Reason.String())
		s.pmu.Unlock()
		if aerr := h.add(st.ID, !st.End); aerr != nil {
			err = aerr
			break
		}
		if werr := s.write(buf[start:off]); werr != nil {
			return off, 0, werr
		}
		h.out = h.mux.Reject(h.out[:0], buf[off:off+n])
		if werr := s.write(h.out); werr != nil {
			return off, 0, werr
		}
		if werr := s.h2Send(h.toClient, false); werr != nil {
			return off, 0, werr
		}
		off += n
		start = off
	}
	if werr := s.write(buf[start:off]); werr != nil {
		return off, 0, werr
	}
	if credit > 0 {
		h.toClient = h.mux.Credit(h.toClient[:0], credit)
		if werr := s.h2Send(h.toClient, false); werr != nil {
			return off, 0, werr
		}
	}
	return off, need, err
}

// h2Send writes frames of the proxy's own to the client, between two whole
// server frames (under wmu); before the server's preface went out they
// wait for it, unless now (an HTTP/1.1 reply before an upgrade).
func (s *session) h2Send(b []byte, now bool) error {
	h := s.h2
	s.wmu.Lock()
	defer s.wmu.Unlock()
	h.mu.Lock()
	if !h.ready && !now {
		if len(h.held)+len(b) > s.maxMsg {
			h.mu.Unlock()
			return errStreams
		}
		h.held = append(h.held, b...)
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	if _, err := s.down.Write(b); err != nil {
		return err
	}
	s.bytesOut.Add(float64(len(b)))
	return nil
}

// add records denied stream id; client is set when the client has not
// ended its side yet.
func (h *h2State) add(id uint32, client bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nd == len(h.denied) {
		// Forget a stream that only waits for the server's refusal.
		i := 0
		for i < h.nd && h.denied[i].client {
			i++
		}
		if i == h.nd {
			return errStreams
		}
		h.remove(i)
	}
	h.denied[h.nd] = deniedStream{id: id, client: client, server: true}
	h.nd++
	h.n.Store(int32(h.nd))
	return nil
}

// drop reports whether a frame on stream id belongs to a denied stream
// (from the client when client, else from the server); end marks the
// frame that ends its sender's side, after which the stream is forgotten
// once both sides ended.
func (h *h2State) drop(id uint32, end, client bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := 0; i < h.nd; i++ {
		d := &h.denied[i]
		if d.id != id {
			continue
		}
		if end {
			if client {
				d.client = false
			} else {
				d.server = false
			}
			if !d.client && !d.server {
				h.remove(i)
			}
		}
		return true
	}
	return false
}

// remove deletes denied[i]; mu must be held.
func (h *h2State) remove(i int) {
	h.nd--
	h.denied[i] = h.denied[h.nd]
	h.n.Store(int32(h.nd))
}

// h2Replies is replies for a multiplexed connection: it forwards the
// server's frames (each whole, so that the proxy's own frames go between
// two of them), drops those on denied streams (the server's RST_STREAM
// refusing them), and releases the frames held for the client once the
// server's preface is out. It allocates nothing.
func (s *session) h2Replies(buf []byte) (consumed, need int, err error) {
	h := s.h2
	f := s.replyFrame()
	var off, start int
	for off < len(buf) {
		s.pmu.Lock()
		op, n, perr := s.parser.Parse(l7.DirReply, buf[off:], f)
		st := h.mux.Stream(l7.DirReply)
		s.pmu.Unlock()
		if need, err = parsed(op, n, len(buf)-off, perr); need > 0 || err != nil {
			break
		}
		switch {
		case st.ID != 0 && h.n.Load() > 0 && h.drop(st.ID, st.End, false):
			if st.Headers {
				err = errAnswered
				break
			}
			if werr := s.h2Forward(buf[start:off], false); werr != nil {
				return off, 0, werr
			}
			start = off + n
		case st.Settings && !h.serverReady:
			h.serverReady = true
			if werr := s.h2Forward(buf[start:off+n], true); werr != nil {
				return off, 0, werr
			}
			start = off + n
		}
		if err != nil {
			break
		}
		off += n
	}
	if werr := s.h2Forward(buf[start:off], false); werr != nil {
		return off, 0, werr
	}
	return off, need, err
}

// h2Forward writes server frames to the client; with ready (b ends with
// the server's preface) the frames held for the client follow them.
func (s *session) h2Forward(b []byte, ready bool) error {
	if len(b) == 0 && !ready {
		return nil
	}
	h := s.h2
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if len(b) > 0 {
		if _, err := s.down.Write(b); err != nil {
			return err
		}
		s.bytesOut.Add(float64(len(b)))
	}
	if !ready {
		return nil
	}
	h.mu.Lock()
	h.ready = true
	held := h.held
	h.held = nil
	h.mu.Unlock()
	if len(held) > 0 {
		if _, err := s.down.Write(held); err != nil {
			return err
		}
		s.bytesOut.Add(float64(len(held)))
	}
	return nil
}
