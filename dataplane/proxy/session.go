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
	"syscall"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/metrics"
	"github.com/bulkhead-io/bulkhead/dataplane/report"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Errors that end an L7 connection, or switch it to another mode. Sentinels:
// they are produced on the per-message path.
var (
	// errLimit: a message does not fit in the buffer limit.
	errLimit = errors.New("proxy: message exceeds the buffer limit")
	// errDenials: too many denials wait for earlier replies.
	errDenials = errors.New("proxy: too many pending denials")
	// errParser: a parser returned a length outside its input, or an
	// unknown Op.
	errParser = errors.New("proxy: parser returned an invalid length")
	// errIdle: neither side sent anything for Limits.IdleTimeout.
	errIdle = errors.New("proxy: connection idle")
	// errFirstMessage: the client sent nothing for
	// Limits.FirstMessageTimeout after the connection was set up.
	errFirstMessage = errors.New("proxy: no first message in time")
	// errSlowMessage: a request that had begun did not complete within
	// Limits.MessageTimeout (and its rate allowance).
	errSlowMessage = errors.New("proxy: message not complete in time")
	// errPass: the parser answered OpPass; the rest of the connection is
	// spliced unparsed.
	errPass = errors.New("proxy: parser passed the connection")
	// errPassPending: the connection was passed while denials still
	// waited for replies that will never be parsed.
	errPassPending = errors.New("proxy: denials pending when the connection was passed")
	// errCloseOnDeny: a request of a CloseOnDeny protocol was denied; the
	// connection ends once its deny reply is written.
	errCloseOnDeny = errors.New("proxy: request denied, closing")
	// errFinal: the deny reply that ends a CloseOnDeny connection was
	// written; nothing may follow it.
	errFinal = errors.New("proxy: final deny reply written")
)

// parsed checks what Parse returned for an input of rest bytes and says
// whether the loop over the buffer ends here: need > 0 (OpMore: that many
// more bytes at least), or err (the parser's error, errPass for OpPass,
// errParser for a length out of range or an op it may not return). Both
// zero: op is OpFrame or OpSkip of n bytes, 0 < n <= rest.
func parsed(op l7.Op, n, rest int, perr error) (need int, err error) {
	switch {
	case perr != nil:
		return 0, perr
	case op == l7.OpMore:
		return max(n, 1), nil
	case op == l7.OpPass:
		return 0, errPass
	case n <= 0 || n > rest || (op != l7.OpFrame && op != l7.OpSkip):
		return 0, errParser
	}
	return 0, nil
}

// noTag is headTag when no denial waits.
const noTag = math.MaxUint64

// shrinkAbove: after a message that grew a buffer beyond this size has been
// consumed, the buffer goes back to its initial size.
const shrinkAbove = 256 << 10

// lingerTimeout bounds how long a connection closed after a deny reply
// (CloseOnDeny) keeps reading what the client still sends, so that the
// close does not reset the connection before the client has read the reply.
const lingerTimeout = 2 * time.Second

// session is one proxied connection.
type session struct {
	p        *Proxy
	client   *net.TCPConn
	upstream *net.TCPConn
	src, dst netip.AddrPort
	conn     enforce.Conn
	declared string
	// learnNames: the connection goes to a trusted nameserver (outbound);
	// the addresses of its DNS answers go into Config.Names.
	learnNames bool
	// answers is the parser as an answerer when learnNames; onAnswer is
	// addName, bound once.
	answers  answerer
	onAnswer func(name []byte, addr netip.Addr, ttl uint32)
	// key is the flow key of this connection's reports, or nil: taken
	// from keyPool by flowKey when needed and given back while the
	// request side is parked (idle.go), so that an idle connection does
	// not hold its 850 bytes. protoID and dstName are the fields of the
	// connection that a key taken again is filled with.
	key     *report.Key
	protoID uint16
	dstName string

	// Set up by startL7; read-only afterwards.
	proto             *l7.Protocol
	pm                *metrics.Protocol
	bytesIn, bytesOut prometheus.Counter
	// maxMsg is the buffer ceiling of each direction (and the bound of
	// the denials that wait): the protocol's MaxMessage when it sets a
	// smaller one than Limits.MaxMessage.
	maxMsg int
	// redis: the protocol's requests and pushes can break request/reply
	// pairing (SUBSCRIBE, MONITOR, RESP3 push), and its keys are never
	// reported.
	redis bool
	// closeOnDeny: the protocol's CloseOnDeny.
	closeOnDeny bool
	// up and down are where requests and replies are written: the
	// upstream and client connections (buffers in allocation tests).
	up, down io.Writer

	// pmu serialises the parser, which serves both directions. It is held
	// from Parse until the frame has been judged, reported and answered
	// (its views may point into the parser), and never during I/O.
	pmu    sync.Mutex
	parser l7.Parser
	// observer is parser as an l7.DenyObserver, or nil.
	observer l7.DenyObserver
	// h2 is the state of a multiplexed (HTTP/2) connection, or nil (h2.go).
	h2 *h2State

	// Owned by the request goroutine.
	reqFrame   *l7.Frame // nil while parked (requestFrame)
	reqScratch []byte
	// dropping: the last request frame was denied; the bytes the parser
	// skips until the next frame are its body and are dropped.
	dropping bool
	// open: a request that expects no reply of its own (NoReply) was
	// forwarded after the last one that expects a reply. Its answers, if
	// any (PostgreSQL's ParseComplete, rows of an Execute), are Partial
	// frames that come before the next complete reply.
	open bool

	// Owned by the reply goroutine.
	repFrame   *l7.Frame // nil while parked (replyFrame)
	repScratch []byte
	pushSeen   bool

	// sessionSides: the parking of both sides (park.go).
	sessionSides

	// lastActive is the time of the last read on either side (UnixNano).
	lastActive atomic.Int64
	// limited: the connection was counted as closed at a limit.
	limited atomic.Bool

	// passing is set once either direction answered OpPass: both
	// directions then splice what is left. passOnce wakes both readers.
	passing  atomic.Bool
	passOnce sync.Once

	// closing is set when a CloseOnDeny denial was produced: the reply
	// goroutine leaves closing the connection to the request goroutine.
	closing atomic.Bool
	// final is closed once the deny reply that ends a CloseOnDeny
	// connection has been written (nil for other protocols).
	final chan struct{}

	// wmu serialises writes to the client (down) and guards finalSent.
	wmu sync.Mutex
	// finalSent: the final deny reply is out; nothing more goes to the
	// client.
	finalSent bool

	// smu guards the pairing state below. It is never held during I/O.
	smu sync.Mutex
	// forwarded counts requests written upstream that expect a reply;
	// replied counts complete replies written to the client (it is
	// written only by the reply goroutine, after the reply bytes are
	// written).
	forwarded, replied uint64
	// unordered: request/reply pairing is broken for good (pub/sub,
	// MONITOR, RESP3 push, Frame.Unordered); denials are written at once.
	unordered bool
	// pend is the FIFO of denials waiting for earlier replies; pend[ph:]
	// are waiting. Their bytes are pendBuf[pendOff:], in order.
	pend    []pendingDenial
	ph      int
	pendBuf []byte
	pendOff int
	// headTag mirrors pend[ph].tag (noTag when empty) and headBefore
	// pend[ph].before, so that the reply goroutine checks them per reply
	// without taking smu.
	headTag    atomic.Uint64
	headBefore atomic.Bool
}

// pendingDenial is a denial reply that must follow the reply to request
// number tag; its bytes end at pendBuf[end]. final marks the denial after
// which a CloseOnDeny connection is closed. before marks the denial of a
// NoReply request that followed other NoReply requests: it goes just
// before the next complete reply after reply number tag, after the
// Partial frames that answer those requests (where PostgreSQL puts the
// error of a statement in the middle of a pipeline: after the rows of the
// statements before it, before the ReadyForQuery that answers Sync).
type pendingDenial struct {
	tag    uint64
	end    int
	final  bool
	before bool
}

// startL7 prepares s to carry protocol proto; it allocates what the
// per-message path then reuses.
func (s *session) startL7(proto *l7.Protocol, up, down io.Writer) {
	s.proto = proto
	s.pm = s.p.met.Protocol(proto.Name)
	s.bytesIn = s.p.met.BytesIn()
	s.bytesOut = s.p.met.BytesOut()
	s.maxMsg = s.p.lim.MaxMessage
	if proto.MaxMessage > 0 && proto.MaxMessage < s.maxMsg {
		s.maxMsg = proto.MaxMessage
	}
	s.redis = proto.Name == redisName
	s.closeOnDeny = proto.CloseOnDeny
	if s.closeOnDeny {
		s.final = make(chan struct{})
	}
	s.up, s.down = up, down
	s.parser = proto.New()
	s.observer, _ = s.parser.(l7.DenyObserver)
	s.startH2()
	if s.learnNames {
		if a, ok := s.parser.(answerer); ok {
			s.answers = a
			s.onAnswer = s.addName
		}
	}
	// reqScratch, repScratch, pend and pendBuf start empty: most
	// connections never deny, and an idle one should hold little. They
	// grow on the first denial and are reused afterwards.
	s.headTag.Store(noTag)
	s.setProtocol(proto.Name)
	s.touch()
}

// l7 forwards the connection message by message with protocol proto;
// cfirst and sfirst hold the client's and the server's bytes already read
// while sniffing.
func (s *session) l7(proto *l7.Protocol, cfirst, sfirst []byte) {
	s.startL7(proto, newSockWriter(s.upstream), newSockWriter(s.client))
	s.repDone = make(chan struct{})
	// The session holds a count of the proxy's wait group until it ends
	// (finish), also while no goroutine serves it (park.go).
	p := s.p
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		s.runReplies(sfirst, len(sfirst))
	}()
	s.runRequests(cfirst, len(cfirst))
}

// bufPool holds the read buffers of initialBuffer bytes. A direction takes
// one when its socket is readable and gives it back once everything read
// has been consumed: an idle connection holds no buffer.
// The pool holds array pointers, which go in and out without allocating.
var bufPool = sync.Pool{New: func() any { return new([initialBuffer]byte) }}

// getBuffer returns a buffer of initialBuffer bytes from bufPool.
func getBuffer() []byte { return bufPool.Get().(*[initialBuffer]byte)[:] }

// putBuffer gives buf back to bufPool when it has the pooled size; a grown
// buffer is left to the collector.
func putBuffer(buf []byte) {
	if cap(buf) != initialBuffer {
		return
	}
	bufPool.Put((*[initialBuffer]byte)(buf[:initialBuffer]))
}

// startBuffer returns the buffer loop starts with, holding first: nil when
// first is empty (first's own buffer then goes to the pool), else first
// extended to its capacity, copied into a pooled buffer when smaller than
// initialBuffer.
func startBuffer(first []byte) []byte {
	if len(first) == 0 {
		putBuffer(first)
		return nil
	}
	if cap(first) < initialBuffer {
		buf := getBuffer()
		copy(buf, first)
		return buf
	}
	return first[:cap(first)]
}

// sockReader drives one direction of an L7 connection from inside a
// syscall.RawConn.Read callback: it reads the socket into a buffer taken
// from bufPool only once the socket is readable (while the connection waits
// for data it holds no buffer), hands what it read to process, and reads
// again. With TCP_INQ on the socket each read also says whether bytes are
// left in the socket: when none are, the callback returns false at once so
// that the runtime's poller waits for the next edge, instead of a read that
// would only answer EAGAIN (one system call less per message and
// direction). That is sound only within one RawConn.Read call: a new call
// resets the poller's readiness, so the first callback of each call reads
// before it waits. TCP_INQ counts a received FIN as a byte left, so an end
// of stream that arrived with the last data is not waited for in vain. Its
// fill method is bound once per loop, so that a read allocates nothing.
type sockReader struct {
	s       *session
	process func([]byte) (consumed, need int, err error)
	lim     int // buffer ceiling

	buf   []byte // nil when no buffer is held
	n     int    // bytes of buf already filled
	fresh bool   // buf[:n] holds bytes process has not seen
	// inq: TCP_INQ is on, and recvmsg reports the bytes left.
	inq bool
	// drained: the last read left the socket empty; the callback waits
	// for the poller before reading again.
	drained bool
	// err is why the callback stopped: a read error, io.EOF, errPass or
	// process's error; rest, with errPass, the bytes read but not
	// consumed.
	err  error
	rest []byte
	now  int64 // UnixNano of the last read

	// guard: this is the client's direction, bound by MessageTimeout and
	// FirstMessageTimeout.
	guard bool
	// begin is when the loop started (UnixNano); seen: the peer has sent
	// something since.
	begin int64
	seen  bool
	// msgStart is when the request held in buf began (UnixNano; 0: none
	// held) and msgBytes how many of its bytes have been read.
	msgStart int64
	msgBytes int
	// park: this direction may park when silent for parkAfter
	// (park.go); the client's only once the workload's is parked.
	park bool
	// armed is the read deadline set on the socket (UnixNano; 0: none).
	armed int64
	conn  *net.TCPConn

	// fill is r.read bound once.
	fill func(fd uintptr) bool
}

// tcpInq is TCP_INQ (linux/tcp.h): recvmsg then carries a TCP_CM_INQ
// control message with the bytes left to read, a FIN counting as one.
const tcpInq = 36

// read is the RawConn.Read callback. It returns true when the direction
// must stop (r.err says why), false to wait for the socket to be readable.
func (r *sockReader) read(fd uintptr) bool {
	for {
		if r.s.passing.Load() {
			// Checked after every read and every deadline change: the
			// other direction passed the connection.
			r.err, r.rest = errPass, r.buf[:r.n]
			return true
		}
		if r.fresh {
			r.fresh = false
			if !r.consume() {
				return true
			}
		}
		if r.drained {
			r.drained = false
			r.release()
			return false
		}
		if r.buf == nil {
			r.buf = getBuffer()
		}
		m, left, err := r.recv(fd)
		switch err {
		case nil:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			r.release()
			return false
		default:
			r.err = os.NewSyscallError("read", err)
			return true
		}
		if m == 0 {
			r.err = io.EOF
			return true
		}
		r.now = time.Now().UnixNano()
		r.s.lastActive.Store(r.now)
		r.n += m
		r.fresh = true
		if !r.seen {
			r.seen = true
			if r.guard && r.park {
				// The client's first bytes: its side may park from
				// now on (parkDeadline).
				r.arm(r.nextDeadline())
			}
		}
		r.drained = r.inq && !left
		if r.msgStart != 0 {
			r.msgBytes += m
		}
	}
}

// release gives back a buffer that holds nothing, before the wait.
func (r *sockReader) release() {
	if r.n == 0 && r.buf != nil {
		putBuffer(r.buf)
		r.buf = nil
	}
}

// recv reads the socket into buf[n:]; left reports (with TCP_INQ) whether
// bytes, or the end of the stream, are left to read.
func (r *sockReader) recv(fd uintptr) (m int, left bool, err error) {
	if !r.inq {
		m, e := rawRead(fd, r.buf[r.n:])
		if e != 0 {
			return 0, true, e
		}
		return m, true, nil
	}
	// On the stack, not in r: an idle connection keeps r.
	var (
		msg syscall.Msghdr
		iov syscall.Iovec
		oob [32]byte // one cmsghdr with TCP_CM_INQ's int32
	)
	iov.Base = &r.buf[r.n]
	iov.SetLen(len(r.buf) - r.n)
	msg.Iov = &iov
	msg.Iovlen = 1
	msg.Control = &oob[0]
	msg.SetControllen(len(oob))
	got, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
	if e != 0 {
		return 0, true, e
	}
	left = true
	if int(msg.Controllen) >= syscall.SizeofCmsghdr+4 {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Level == syscall.SOL_TCP && h.Type == tcpInq {
			left = *(*int32)(unsafe.Pointer(&oob[syscall.SizeofCmsghdr])) != 0
		}
	}
	return int(got), left, nil
}

// consume hands the unconsumed bytes to process, keeps the bytes it did
// not consume (an incomplete message) at the front and grows buf up to the
// ceiling for them. It returns false, with r.err set, when the direction
// must stop.
func (r *sockReader) consume() bool {
	c, need, err := r.process(r.buf[:r.n])
	if errors.Is(err, errPass) {
		r.err, r.rest = errPass, r.buf[c:r.n]
		return false
	}
	if err != nil {
		r.err = err
		return false
	}
	if c > 0 {
		r.n = copy(r.buf, r.buf[c:r.n])
	}
	if r.guard {
		r.track(c)
	}
	if r.n == 0 && (len(r.buf) > shrinkAbove || len(r.buf) == initialBuffer) {
		// Nothing pending: the buffer goes back to the pool (or, grown
		// too large, to the collector) until the socket is readable
		// again.
		putBuffer(r.buf)
		r.buf = nil
	}
	if r.n+need > r.lim {
		r.err = errLimit
		return false
	}
	if r.buf != nil && (r.n+need > len(r.buf) || r.n == len(r.buf)) {
		if r.n >= r.lim {
			r.err = errLimit
			return false
		}
		nb := make([]byte, min(r.lim, max(2*len(r.buf), r.n+need)))
		copy(nb, r.buf[:r.n])
		putBuffer(r.buf)
		r.buf = nb
	}
	return true
}

// track notes when the request held in buf began, after process consumed
// c bytes, and brings the read deadline forward to its bound.
func (r *sockReader) track(c int) {
	switch {
	case r.n == 0:
		r.msgStart = 0
	case c > 0 || r.msgStart == 0:
		// A new request began with the bytes left.
		r.msgStart, r.msgBytes = r.now, r.n
		if d := r.messageDeadline(); d > 0 && (r.armed == 0 || d < r.armed) {
			r.arm(d)
		}
	}
}

// messageDeadline is when the request held in buf must be complete
// (UnixNano; 0: no bound).
func (r *sockReader) messageDeadline() int64 {
	lim := &r.s.p.lim
	if r.msgStart == 0 || lim.MessageTimeout < 0 {
		return 0
	}
	grace := time.Duration(r.msgBytes) * time.Second / time.Duration(lim.MessageMinRate)
	return r.msgStart + int64(lim.MessageTimeout+grace)
}

// nextDeadline is the earliest of the direction's bounds (UnixNano; 0:
// none): idle, first message, message.
func (r *sockReader) nextDeadline() int64 {
	lim := &r.s.p.lim
	var d int64
	earliest := func(t int64) {
		if t > 0 && (d == 0 || t < d) {
			d = t
		}
	}
	if lim.IdleTimeout > 0 {
		earliest(r.s.lastActive.Load() + int64(lim.IdleTimeout))
	}
	if r.park {
		earliest(r.parkDeadline())
	}
	if r.guard {
		if !r.seen && lim.FirstMessageTimeout > 0 {
			earliest(r.begin + int64(lim.FirstMessageTimeout))
		}
		earliest(r.messageDeadline())
	}
	return d
}

// arm sets the socket's read deadline to d (UnixNano).
func (r *sockReader) arm(d int64) {
	r.armed = d
	_ = r.conn.SetReadDeadline(time.Unix(0, d))
}

// expired is called when the read deadline passed: it returns the limit
// that was broken (errIdle, errFirstMessage, errSlowMessage), or nil after
// setting the deadline to the next bound.
func (r *sockReader) expired() error {
	now := time.Now().UnixNano()
	lim := &r.s.p.lim
	if r.guard {
		if !r.seen && lim.FirstMessageTimeout > 0 && now >= r.begin+int64(lim.FirstMessageTimeout) {
			return errFirstMessage
		}
		if d := r.messageDeadline(); d > 0 && now >= d {
			return errSlowMessage
		}
	}
	if lim.IdleTimeout > 0 && now >= r.s.lastActive.Load()+int64(lim.IdleTimeout) {
		return errIdle
	}
	if r.park && r.n == 0 && now >= r.now+int64(parkAfter) && r.mayPark() {
		return errPark
	}
	if d := r.nextDeadline(); d > 0 {
		r.arm(d)
	} else {
		r.armed = 0
		_ = r.conn.SetReadDeadline(time.Time{})
	}
	return nil
}

// enableInq turns TCP_INQ on for c; false when the kernel refuses it (the
// reader then reads until EAGAIN).
func enableInq(rc syscall.RawConn) bool {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_TCP, tcpInq, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// requestSide runs the client → workload direction to its end, with a
// small frame. It returns true when it parked instead (park.go): another
// goroutine then runs the rest.
func (s *session) requestSide(buf []byte, n int) (parked bool) {
	for {
		rest, err := s.loop(s.client, buf, n, s.requests)
		if errors.Is(err, errPark) {
			s.reqSeen = true
			if s.p.parker.park(s, true) {
				return true
			}
			buf, n = nil, 0
			continue
		}
		s.endRequests(rest, err, s.repDone)
		return false
	}
}

// endRequests ends the client → workload direction after loop returned
// rest and err.
func (s *session) endRequests(rest []byte, err error, repDone <-chan struct{}) {
	p := s.p
	switch {
	case err == nil:
		// The client is done sending: pass the half-close on and let the
		// workload answer what it got.
		_ = s.upstream.CloseWrite()
	case errors.Is(err, errPass):
		s.passRequests(rest)
	case errors.Is(err, errCloseOnDeny):
		s.closeAfterDeny(repDone)
	case errors.Is(err, errSlowMessage) || errors.Is(err, errFirstMessage):
		// Slowloris: a limit violation, but not a malformed message.
		s.countLimit(err)
		s.recordBad(enforce.Limit)
		p.log.Info("proxy: closing a slow connection", "src", s.src.String(), "dst", s.dst.String(),
			"protocol", s.proto.Name, "err", err)
		reset(s.client)
		_ = s.upstream.Close()
	case badInput(err):
		reason := enforce.Malformed
		if errors.Is(err, errLimit) || errors.Is(err, errDenials) || errors.Is(err, l7.ErrTooLong) {
			reason = enforce.Limit
		}
		s.countLimit(err)
		s.pm.Malformed.Inc()
		s.recordBad(reason)
		p.log.Info("proxy: closing connection on a bad request", "src", s.src.String(), "dst", s.dst.String(),
			"protocol", s.proto.Name, "err", err)
		reset(s.client)
		_ = s.upstream.Close()
	default:
		s.countLimit(err)
		if !isClosed(err) {
			p.log.Debug("proxy: client side ended", "src", s.src.String(), "err", err)
		}
		reset(s.client)
		_ = s.upstream.Close()
	}
}

// replySide runs the workload → client direction to its end, with as
// small a frame as requestSide. It returns true when it parked instead
// (park.go): another goroutine then runs the rest.
func (s *session) replySide(buf []byte, n int) (parked bool) {
	for {
		rest, err := s.loop(s.upstream, buf, n, s.replies)
		if errors.Is(err, errPark) {
			if s.p.parker.park(s, false) {
				return true
			}
			buf, n = nil, 0
			continue
		}
		s.endReplies(rest, err)
		return false
	}
}

// endReplies ends the workload → client direction after loop returned rest
// and err.
func (s *session) endReplies(rest []byte, err error) {
	p := s.p
	if errors.Is(err, errPass) {
		err = s.passReplies(rest)
		if err == nil {
			return
		}
	}
	switch {
	case s.closing.Load() || errors.Is(err, errFinal):
		// A CloseOnDeny denial: the request side writes the FIN and
		// closes both sides once the deny reply is out.
		return
	case err == nil:
		// The workload closed: everything it said has been forwarded,
		// with the denials that followed it.
		_ = s.client.Close()
	case badInput(err):
		s.countLimit(err)
		s.pm.Malformed.Inc()
		p.log.Warn("proxy: closing connection on a bad reply", "src", s.src.String(), "dst", s.dst.String(),
			"protocol", s.proto.Name, "err", err)
		reset(s.client)
	default:
		s.countLimit(err)
		if !isClosed(err) {
			p.log.Debug("proxy: server side ended", "dst", s.dst.String(), "err", err)
		}
		reset(s.client) // also unblocks the request goroutine
	}
	_ = s.upstream.Close()
}

// countLimit counts err under bulkhead_proxy_limit_total when it is one of
// the limits of Limits, once per connection (both directions may run into
// the idle timeout).
func (s *session) countLimit(err error) {
	var l string
	switch {
	case errors.Is(err, errLimit) || errors.Is(err, l7.ErrTooLong):
		l = metrics.LimitMessageSize
	case errors.Is(err, errDenials):
		l = metrics.LimitPendingDenials
	case errors.Is(err, errSlowMessage):
		l = metrics.LimitMessageTimeout
	case errors.Is(err, errFirstMessage):
		l = metrics.LimitFirstMessageTimeout
	case errors.Is(err, errIdle):
		l = metrics.LimitIdle
	default:
		return
	}
	if s.limited.CompareAndSwap(false, true) {
		s.p.met.Limit(l).Inc()
	}
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
// not consume (an incomplete message) at the front (sockReader). It grows
// buf up to maxMsg. It returns nil at the end of the stream, or the error
// that ended it; with errPass (this direction's parser, or the other's,
// passed the connection) it also returns the bytes read but not consumed,
// which must be forwarded before the rest of the stream. The client's
// direction is also bound by Limits.FirstMessageTimeout and
// Limits.MessageTimeout (errFirstMessage, errSlowMessage); both by
// Limits.IdleTimeout (errIdle).
func (s *session) loop(src *net.TCPConn, buf []byte, n int, process func([]byte) (consumed, need int, err error)) ([]byte, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	r := &sockReader{
		s:       s,
		process: process,
		lim:     s.maxMsg,
		buf:     startBuffer(buf[:n]),
		n:       n,
		fresh:   n > 0,
		inq:     enableInq(rc),
		guard:   src == s.client,
		park:    s.client != s.upstream && s.p.parker != nil,
		begin:   now,
		seen:    n > 0 || (src == s.client && s.reqSeen),
		now:     now,
		conn:    src,
	}
	r.fill = r.read
	if d := r.nextDeadline(); d > 0 {
		r.arm(d)
	}
	for {
		// A new Read resets the poller's readiness: read before waiting.
		r.drained = false
		err := rc.Read(r.fill)
		if err == nil {
			err, r.err = r.err, nil
		}
		if errors.Is(err, errPass) {
			s.startPass()
			rest := r.rest
			r.rest = nil
			if rest == nil {
				rest = r.buf[:r.n]
			}
			return rest, errPass
		}
		if err == nil {
			continue
		}
		if s.passing.Load() {
			// The other direction passed the connection and woke
			// this one.
			s.startPass()
			return r.buf[:r.n], errPass
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if lerr := r.expired(); lerr != nil {
				return nil, lerr
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
}

func (s *session) touch() { s.lastActive.Store(time.Now().UnixNano()) }

// requests judges the complete request frames at the front of buf, forwards
// the allowed ones upstream (consecutive ones in one write) and answers the
// denied ones. It returns how many bytes it consumed and, when the next
// frame is incomplete, how many more bytes it needs at least. It allocates
// nothing.
func (s *session) requests(buf []byte) (consumed, need int, err error) {
	if s.h2 != nil {
		return s.h2Requests(buf)
	}
	if pol := s.p.engine.Load(); pol != nil && pol != s.conn.Policy() {
		s.conn.Refresh(pol)
		s.refreshKey()
	}
	f := s.requestFrame()
	var (
		off, start, frames int
		unordered          bool
	)
	for off < len(buf) {
		s.pmu.Lock()
		op, n, perr := s.parser.Parse(l7.DirRequest, buf[off:], f)
		if need, err = parsed(op, n, len(buf)-off, perr); need > 0 || err != nil {
			s.pmu.Unlock()
			break
		}
		if op == l7.OpSkip {
			s.pmu.Unlock()
			off += n
			if s.dropping {
				// The body of the denied frame: dropped with it.
				start = off
			}
			continue
		}
		s.dropping = false
		var d enforce.Decision // Allow for a Control frame: not judged
		if !f.Control {
			d = s.conn.Message(f)
			s.recordMessage(f, d, n)
		}
		if d.Verdict != enforce.Deny || !d.Enforced {
			if f.Unordered || (s.redis && breaksPairing(f.Verb)) {
				unordered = true
			}
			if !f.NoReply {
				frames++
			}
			s.open = f.NoReply
			s.pmu.Unlock()
			off += n
			continue
		}
		// Denied: the requests before it are counted as forwarded before
		// its reply is placed, then written; the reply follows.
		s.count(frames, unordered)
		now, derr := s.prepareDeny(f, d)
		if derr == nil && s.observer != nil {
			s.observer.Denied(f)
		}
		s.pmu.Unlock()
		if werr := s.write(buf[start:off]); werr != nil {
			return off, 0, werr
		}
		frames, unordered = 0, false
		off += n
		start = off
		s.dropping = true
		if derr != nil {
			return off, 0, derr
		}
		if now {
			if werr := s.writeDenial(); werr != nil {
				return off, 0, werr
			}
		}
		if s.closeOnDeny {
			// Nothing after a denied request of such a protocol is
			// forwarded: the connection ends with its deny reply.
			return len(buf), 0, errCloseOnDeny
		}
	}
	s.count(frames, unordered)
	if werr := s.write(buf[start:off]); werr != nil {
		return off, 0, werr
	}
	return off, need, err
}

// count adds frames requests (that expect a reply) to the forwarded count
// and marks the connection unordered when asked, before their bytes are
// written, so that a reply can never be counted before its request.
func (s *session) count(frames int, unordered bool) {
	if frames == 0 && !unordered {
		return
	}
	s.smu.Lock()
	s.forwarded += uint64(frames)
	if unordered {
		s.unordered = true
	}
	s.smu.Unlock()
}

// write forwards request bytes upstream.
func (s *session) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := s.up.Write(b); err != nil {
		return err
	}
	s.bytesIn.Add(float64(len(b)))
	return nil
}

// prepareDeny builds the deny reply to f. When every forwarded request has
// been answered (or pairing is broken) the reply goes out at once: now is
// true and the bytes are in reqScratch (with any denials still queued
// before them) for writeDenial. Otherwise it waits in the FIFO, after the
// reply to the last request forwarded before it. A protocol whose Deny
// appends nothing (a request its client expects no answer to) queues
// nothing, unless the connection closes after it. The reply to a NoReply
// request forwarded after other NoReply requests (s.open) waits for the
// next complete reply and goes just before it, after their answers.
func (s *session) prepareDeny(f *l7.Frame, d enforce.Decision) (now bool, err error) {
	reason := d.Reason.String()
	if s.closeOnDeny {
		s.closing.Store(true)
	}
	before := f.NoReply && s.open && !s.closeOnDeny
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.passing.Load() {
		// The other direction passed the connection: nothing can be
		// placed any more.
		return false, errPassPending
	}
	if s.unordered || (!before && s.replied == s.forwarded && s.ph == len(s.pend)) {
		out := s.reqScratch[:0]
		if s.ph < len(s.pend) {
			// Unordered with denials still queued: they go first.
			out = append(out, s.pendBuf[s.pendOff:]...)
			s.clearPending()
		}
		s.reqScratch = s.proto.Deny(out, f, reason)
		return true, nil
	}
	had := len(s.pendBuf)
	s.pendBuf = s.proto.Deny(s.pendBuf, f, reason)
	if len(s.pendBuf) == had && !s.closeOnDeny {
		return false, nil
	}
	if len(s.pendBuf)-s.pendOff > s.maxMsg {
		return false, errDenials
	}
	s.pend = append(s.pend, pendingDenial{tag: s.forwarded, end: len(s.pendBuf), final: s.closeOnDeny, before: before})
	if s.ph == len(s.pend)-1 {
		s.setHead(s.pend[s.ph])
	}
	return false, nil
}

// setHead mirrors the head of the denial FIFO for the reply goroutine; smu
// must be held.
func (s *session) setHead(d pendingDenial) {
	s.headBefore.Store(d.before)
	s.headTag.Store(d.tag)
}

// writeDenial writes the deny replies prepareDeny left in reqScratch to the
// client.
func (s *session) writeDenial() error {
	out := s.reqScratch
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.passing.Load() {
		return errPassPending
	}
	if len(out) > 0 {
		if _, err := s.down.Write(out); err != nil {
			return err
		}
		s.bytesOut.Add(float64(len(out)))
	}
	if s.closeOnDeny && !s.finalSent {
		s.finalSent = true
		close(s.final)
	}
	return nil
}

// clearPending empties the denial FIFO; smu must be held.
func (s *session) clearPending() {
	s.pend = s.pend[:0]
	s.ph = 0
	s.pendBuf = s.pendBuf[:0]
	s.pendOff = 0
	s.headTag.Store(noTag)
	s.headBefore.Store(false)
}

// replies forwards the complete replies at the front of buf to the client,
// inserting each waiting denial right after the reply it follows. It returns
// how many bytes it consumed and how many more the next reply needs. It
// allocates nothing.
func (s *session) replies(buf []byte) (consumed, need int, err error) {
	if s.h2 != nil {
		return s.h2Replies(buf)
	}
	f := s.replyFrame()
	var off, start, k int
	for off < len(buf) {
		if k > 0 && !s.headBefore.Load() && s.headTag.Load() <= s.replied+uint64(k) {
			// A denial follows the reply that ends here.
			if cerr := s.commit(buf[start:off], k, false); cerr != nil {
				return off, 0, cerr
			}
			start, k = off, 0
		}
		s.pmu.Lock()
		op, n, perr := s.parser.Parse(l7.DirReply, buf[off:], f)
		partial, unordered := f.Partial, f.Unordered
		if s.answers != nil && perr == nil && op == l7.OpFrame {
			// A DNS answer from a trusted nameserver: learn which
			// addresses its name stands for.
			s.answers.Answers(s.onAnswer)
		}
		s.pmu.Unlock()
		if need, err = parsed(op, n, len(buf)-off, perr); need > 0 || err != nil {
			break
		}
		switch op {
		case l7.OpFrame:
			if !partial {
				if s.headBefore.Load() && s.headTag.Load() <= s.replied+uint64(k) {
					// A denial goes just before this reply.
					if cerr := s.commit(buf[start:off], k, true); cerr != nil {
						return off, 0, cerr
					}
					start, k = off, 0
				}
				k++
			}
			if unordered {
				s.markUnordered()
			}
		case l7.OpSkip:
			if s.redis && !s.pushSeen && buf[off] == '>' {
				// A RESP3 push: not an answer to any request.
				s.pushSeen = true
				s.markUnordered()
			}
		}
		off += n
	}
	if cerr := s.commit(buf[start:off], k, false); cerr != nil {
		return off, 0, cerr
	}
	return off, need, err
}

// local is the proxied workload's address: the destination of an inbound
// connection, the source of an outbound one.
func (s *session) local() netip.Addr {
	if s.conn.Direction() == enforce.Egress {
		return s.src.Addr()
	}
	return s.dst.Addr()
}

// answerer is a parser that reports the addresses a DNS reply gives for its
// question (protocols/dns.Parser).
type answerer interface {
	Answers(fn func(name []byte, addr netip.Addr, ttl uint32))
}

// addName records one answer in the proxy's Names table.
func (s *session) addName(name []byte, addr netip.Addr, ttl uint32) {
	s.p.cfg.Names.Add(name, addr, ttl)
}

// markUnordered breaks request/reply pairing for the rest of the
// connection.
func (s *session) markUnordered() {
	s.smu.Lock()
	s.unordered = true
	s.smu.Unlock()
}

// commit writes b (k complete replies and skipped or partial frames) to the
// client, counts the replies, then writes the denials that were waiting for
// them; with before, a complete reply follows b, and the denials that go
// just before it are written too. After the final denial of a CloseOnDeny
// connection it returns errFinal.
func (s *session) commit(b []byte, k int, before bool) error {
	if len(b) == 0 && k == 0 && !before {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.finalSent {
		return errFinal
	}
	if len(b) > 0 {
		if _, err := s.down.Write(b); err != nil {
			return err
		}
		s.bytesOut.Add(float64(len(b)))
	}
	if k == 0 && !before {
		return nil
	}
	s.smu.Lock()
	s.replied += uint64(k)
	out := s.repScratch[:0]
	final := false
	first := s.ph
	for s.ph < len(s.pend) {
		d := &s.pend[s.ph]
		if d.tag > s.replied || (d.before && !before) {
			break
		}
		final = final || d.final
		s.ph++
	}
	if s.ph > first {
		end := s.pend[s.ph-1].end
		out = append(out, s.pendBuf[s.pendOff:end]...)
		s.pendOff = end
		if s.ph == len(s.pend) {
			s.clearPending()
		} else {
			s.setHead(s.pend[s.ph])
		}
	}
	s.smu.Unlock()
	s.repScratch = out
	if len(out) > 0 {
		if _, err := s.down.Write(out); err != nil {
			return err
		}
		s.bytesOut.Add(float64(len(out)))
	}
	if final {
		s.finalSent = true
		close(s.final)
		return errFinal
	}
	return nil
}

// redisName is the Redis protocol's name, whose pairing breakers are known
// to the proxy and whose keys are never reported.
const redisName = "redis"

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
