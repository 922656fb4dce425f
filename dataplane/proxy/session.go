package proxy

import (
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Errors that end an L7 connection. Sentinels: they are produced on the
// per-message path.
var (
	// errLimit: a message does not fit in Limits.MaxMessage.
	errLimit = errors.New("proxy: message exceeds the buffer limit")
	// errDenials: too many denials wait for earlier replies.
	errDenials = errors.New("proxy: too many pending denials")
	// errParser: a parser returned a length outside its input.
	errParser = errors.New("proxy: parser returned an invalid length")
	// errIdle: neither side sent anything for Limits.IdleTimeout.
	errIdle = errors.New("proxy: connection idle")
)

// noTag is headTag when no denial waits.
const noTag = math.MaxUint64

// shrinkAbove: after a message that grew a buffer beyond this size has been
// consumed, the buffer goes back to its initial size.
const shrinkAbove = 256 << 10

// session is one proxied connection.
type session struct {
	p        *Proxy
	client   *net.TCPConn
	upstream *net.TCPConn
	src, dst netip.AddrPort
	conn     enforce.Conn
	declared string
	// key is the flow key of this connection's reports.
	key report.Key

	// Set up by startL7; read-only afterwards.
	proto             *l7.Protocol
	pm                *metrics.Protocol
	bytesIn, bytesOut prometheus.Counter
	// redis: the protocol's requests and pushes can break request/reply
	// pairing (SUBSCRIBE, MONITOR, RESP3 push).
	redis bool
	// up and down are where requests and replies are written: the
	// upstream and client connections (buffers in allocation tests).
	up, down io.Writer

	// Owned by the request goroutine.
	reqParser  l7.Parser
	reqFrame   l7.Frame
	reqScratch []byte

	// Owned by the reply goroutine.
	repParser  l7.Parser
	repFrame   l7.Frame
	repScratch []byte
	pushSeen   bool

	// lastActive is the time of the last read on either side (UnixNano).
	lastActive atomic.Int64

	// wmu serialises writes to the client (down).
	wmu sync.Mutex

	// smu guards the pairing state below. It is never held during I/O.
	smu sync.Mutex
	// forwarded counts requests written upstream; replied counts replies
	// written to the client (it is written only by the reply goroutine,
	// after the reply bytes are written).
	forwarded, replied uint64
	// unordered: request/reply pairing is broken for good (pub/sub,
	// MONITOR, RESP3 push); denials are written at once.
	unordered bool
	// pend is the FIFO of denials waiting for earlier replies; pend[ph:]
	// are waiting. Their bytes are pendBuf[pendOff:], in order.
	pend    []pendingDenial
	ph      int
	pendBuf []byte
	pendOff int
	// headTag mirrors pend[ph].tag (noTag when empty) so that the reply
	// goroutine checks it per reply without taking smu.
	headTag atomic.Uint64
}

// pendingDenial is a denial reply that must follow the reply to request
// number tag; its bytes end at pendBuf[end].
type pendingDenial struct {
	tag uint64
	end int
}

// startL7 prepares s to carry protocol proto; it allocates what the
// per-message path then reuses.
func (s *session) startL7(proto *l7.Protocol, up, down io.Writer) {
	s.proto = proto
	s.pm = s.p.met.Protocol(proto.Name)
	s.bytesIn = s.p.met.BytesIn()
	s.bytesOut = s.p.met.BytesOut()
	s.redis = proto.Name == "redis"
	s.up, s.down = up, down
	s.reqParser = proto.New()
	s.repParser = proto.New()
	s.reqScratch = make([]byte, 0, 256)
	s.repScratch = make([]byte, 0, 256)
	s.pend = make([]pendingDenial, 0, 8)
	s.pendBuf = make([]byte, 0, 256)
	s.headTag.Store(noTag)
	s.setProtocol(proto.Name)
	s.touch()
}

// l7 forwards the connection message by message with protocol proto; first
// holds the client's bytes already read while sniffing.
func (s *session) l7(proto *l7.Protocol, first []byte) {
	p := s.p
	s.startL7(proto, s.upstream, s.client)

	reqBuf := first
	if cap(reqBuf) < initialBuffer {
		reqBuf = make([]byte, initialBuffer)
		copy(reqBuf, first)
	}
	reqBuf = reqBuf[:cap(reqBuf)]

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := s.loop(s.upstream, make([]byte, initialBuffer), 0, s.replies)
		switch {
		case err == nil:
			// The workload closed: everything it said has been
			// forwarded, with the denials that followed it.
			_ = s.client.Close()
		case badInput(err):
			s.pm.Malformed.Inc()
			p.log.Warn("proxy: closing connection on a bad reply", "src", s.src.String(), "dst", s.dst.String(),
				"protocol", proto.Name, "err", err)
			reset(s.client)
		default:
			if !isClosed(err) {
				p.log.Debug("proxy: server side ended", "dst", s.dst.String(), "err", err)
			}
			reset(s.client) // also unblocks the request goroutine
		}
		_ = s.upstream.Close()
	}()

	reqErr := s.loop(s.client, reqBuf, len(first), s.requests)
	switch {
	case reqErr == nil:
		// The client is done sending: pass the half-close on and let the
		// workload answer what it got.
		_ = s.upstream.CloseWrite()
	case badInput(reqErr):
		reason := enforce.Malformed
		if errors.Is(reqErr, errLimit) || errors.Is(reqErr, errDenials) || errors.Is(reqErr, l7.ErrTooLong) {
			reason = enforce.Limit
		}
		s.pm.Malformed.Inc()
		s.recordBad(reason)
		p.log.Info("proxy: closing connection on a bad request", "src", s.src.String(), "dst", s.dst.String(),
			"protocol", proto.Name, "err", reqErr)
		reset(s.client)
		_ = s.upstream.Close()
	default:
		if !isClosed(reqErr) {
			p.log.Debug("proxy: client side ended", "src", s.src.String(), "err", reqErr)
		}
		reset(s.client)
		_ = s.upstream.Close()
	}
	wg.Wait()
	_ = s.client.Close()
}

// badInput reports errors that say a peer sent something the proxy cannot
// or will not carry: malformed or over-limit messages.
func badInput(err error) bool {
	return errors.Is(err, l7.ErrMalformed) || errors.Is(err, l7.ErrTooLong) || errors.Is(err, errLimit) ||
		errors.Is(err, errParser) || errors.Is(err, errDenials)
}

// isClosed reports errors that only say the connection was closed (by us or
// the peer), which are not worth logging.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, errIdle)
}

// loop reads src into buf (whose first n bytes are already filled) and hands
// the unconsumed bytes to process after each read, keeping the bytes it did
// not consume (an incomplete message) at the front. It grows buf up to
// MaxMessage. It returns nil at the end of the stream, or the error that
// ended it.
func (s *session) loop(src *net.TCPConn, buf []byte, n int, process func([]byte) (consumed, need int, err error)) error {
	lim := s.p.lim.MaxMessage
	idle := s.p.lim.IdleTimeout
	if idle > 0 {
		_ = src.SetReadDeadline(time.Now().Add(idle))
	}
	fresh := n > 0
	for {
		if fresh {
			c, need, err := process(buf[:n])
			if err != nil {
				return err
			}
			if c > 0 {
				n = copy(buf, buf[c:n])
			}
			if n == 0 && len(buf) > shrinkAbove {
				buf = make([]byte, initialBuffer)
			}
			if n+need > lim {
				return errLimit
			}
			if n+need > len(buf) || n == len(buf) {
				if n == lim {
					return errLimit
				}
				nb := make([]byte, min(lim, max(2*len(buf), n+need)))
				copy(nb, buf[:n])
				buf = nb
			}
		}
		m, err := src.Read(buf[n:])
		fresh = m > 0
		if m > 0 {
			n += m
			s.touch()
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && idle > 0 {
				last := time.Unix(0, s.lastActive.Load())
				if time.Since(last) < idle {
					// The other side was active: not idle.
					_ = src.SetReadDeadline(last.Add(idle))
					continue
				}
				return errIdle
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (s *session) touch() { s.lastActive.Store(time.Now().UnixNano()) }

// requests judges the complete request frames at the front of buf, forwards
// the allowed ones upstream (consecutive ones in one write) and answers the
// denied ones. It returns how many bytes it consumed and, when the next
// frame is incomplete, how many more bytes it needs at least. It allocates
// nothing.
func (s *session) requests(buf []byte) (consumed, need int, err error) {
	if pol := s.p.engine.Load(); pol != nil && pol != s.conn.Policy() {
		s.conn.Refresh(pol)
		s.refreshKey()
	}
	var (
		off, start, frames int
		unordered          bool
	)
	for off < len(buf) {
		op, n, perr := s.reqParser.Parse(l7.DirRequest, buf[off:], &s.reqFrame)
		if perr != nil {
			err = perr
			break
		}
		if op == l7.OpMore {
			need = max(n, 1)
			break
		}
		if n <= 0 || n > len(buf)-off {
			err = errParser
			break
		}
		if op == l7.OpFrame {
			d := s.conn.Message(&s.reqFrame)
			s.recordMessage(&s.reqFrame, d, n)
			if d.Verdict == enforce.Deny && d.Enforced {
				if ferr := s.forward(buf[start:off], frames, unordered); ferr != nil {
					return off, 0, ferr
				}
				frames, unordered = 0, false
				off += n
				start = off
				if derr := s.deny(&s.reqFrame, d); derr != nil {
					return off, 0, derr
				}
				continue
			}
			frames++
			if s.redis && breaksPairing(s.reqFrame.Verb) {
				unordered = true
			}
		}
		off += n
	}
	if ferr := s.forward(buf[start:off], frames, unordered); ferr != nil {
		return off, 0, ferr
	}
	return off, need, err
}

// forward writes b (frames requests that each expect a reply, plus skipped
// bytes) upstream. The count goes up before the write, so that a reply can
// never be counted before its request.
func (s *session) forward(b []byte, frames int, unordered bool) error {
	if len(b) == 0 {
		return nil
	}
	if frames > 0 || unordered {
		s.smu.Lock()
		s.forwarded += uint64(frames)
		if unordered {
			s.unordered = true
		}
		s.smu.Unlock()
	}
	if _, err := s.up.Write(b); err != nil {
		return err
	}
	s.bytesIn.Add(float64(len(b)))
	return nil
}

// deny answers a denied request: at once when every forwarded request has
// been answered (or pairing is broken), else after the reply to the last
// request forwarded before it.
func (s *session) deny(f *l7.Frame, d enforce.Decision) error {
	reason := d.Reason.String()
	s.smu.Lock()
	if s.unordered || (s.replied == s.forwarded && s.ph == len(s.pend)) {
		out := s.reqScratch[:0]
		if s.ph < len(s.pend) {
			// Unordered with denials still queued: they go first.
			out = append(out, s.pendBuf[s.pendOff:]...)
			s.clearPending()
		}
		out = s.proto.Deny(out, f, reason)
		s.reqScratch = out
		s.smu.Unlock()
		s.wmu.Lock()
		_, err := s.down.Write(out)
		s.wmu.Unlock()
		if err == nil {
			s.bytesOut.Add(float64(len(out)))
		}
		return err
	}
	s.pendBuf = s.proto.Deny(s.pendBuf, f, reason)
	if len(s.pendBuf)-s.pendOff > s.p.lim.MaxMessage {
		s.smu.Unlock()
		return errDenials
	}
	s.pend = append(s.pend, pendingDenial{tag: s.forwarded, end: len(s.pendBuf)})
	if s.ph == len(s.pend)-1 {
		s.headTag.Store(s.forwarded)
	}
	s.smu.Unlock()
	return nil
}

// clearPending empties the denial FIFO; smu must be held.
func (s *session) clearPending() {
	s.pend = s.pend[:0]
	s.ph = 0
	s.pendBuf = s.pendBuf[:0]
	s.pendOff = 0
	s.headTag.Store(noTag)
}

// replies forwards the complete replies at the front of buf to the client,
// inserting each waiting denial right after the reply it follows. It returns
// how many bytes it consumed and how many more the next reply needs. It
// allocates nothing.
func (s *session) replies(buf []byte) (consumed, need int, err error) {
	var off, start, k int
	for off < len(buf) {
		if k > 0 && s.headTag.Load() <= s.replied+uint64(k) {
			// A denial follows the reply that ends here.
			if cerr := s.commit(buf[start:off], k); cerr != nil {
				return off, 0, cerr
			}
			start, k = off, 0
		}
		op, n, perr := s.repParser.Parse(l7.DirReply, buf[off:], &s.repFrame)
		if perr != nil {
			err = perr
			break
		}
		if op == l7.OpMore {
			need = max(n, 1)
			break
		}
		if n <= 0 || n > len(buf)-off {
			err = errParser
			break
		}
		if op == l7.OpFrame {
			k++
		} else if s.redis && !s.pushSeen && buf[off] == '>' {
			// A RESP3 push: not an answer to any request.
			s.pushSeen = true
			s.smu.Lock()
			s.unordered = true
			s.smu.Unlock()
		}
		off += n
	}
	if cerr := s.commit(buf[start:off], k); cerr != nil {
		return off, 0, cerr
	}
	return off, need, err
}

// commit writes b (k complete replies and skipped bytes) to the client,
// counts the replies, then writes the denials that were waiting for them.
func (s *session) commit(b []byte, k int) error {
	if len(b) == 0 && k == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if len(b) > 0 {
		if _, err := s.down.Write(b); err != nil {
			return err
		}
		s.bytesOut.Add(float64(len(b)))
	}
	if k == 0 {
		return nil
	}
	s.smu.Lock()
	s.replied += uint64(k)
	out := s.repScratch[:0]
	if s.ph < len(s.pend) && s.pend[s.ph].tag <= s.replied {
		for s.ph < len(s.pend) && s.pend[s.ph].tag <= s.replied {
			s.ph++
		}
		end := s.pend[s.ph-1].end
		out = append(out, s.pendBuf[s.pendOff:end]...)
		s.pendOff = end
		if s.ph == len(s.pend) {
			s.clearPending()
		} else {
			s.headTag.Store(s.pend[s.ph].tag)
		}
	}
	s.smu.Unlock()
	s.repScratch = out
	if len(out) == 0 {
		return nil
	}
	if _, err := s.down.Write(out); err != nil {
		return err
	}
	s.bytesOut.Add(float64(len(out)))
	return nil
}

// pairingBreakers are the Redis commands after which replies no longer pair
// with requests one to one.
var pairingBreakers = [...]string{"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR"}

// breaksPairing reports whether the Redis command verb (any case) is one of
// pairingBreakers.
func breaksPairing(verb []byte) bool {
	for _, b := range pairingBreakers {
		if equalFoldASCII(verb, b) {
			return true
		}
	}
	return false
}

// equalFoldASCII reports whether b equals the upper-case ASCII word s,
// ignoring the case of b.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
