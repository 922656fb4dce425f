package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// parkAfter is how long a side of an L7 connection reads nothing before
// its goroutine parks (see parker).
const parkAfter = time.Second

// errPark: a side was silent for parkAfter with nothing held; its
// goroutine may park.
var errPark = errors.New("proxy: side idle, parking")

// The states of a session's two sides (session.sides). A side runs (a
// goroutine reads its socket), is parked (its socket waits in the parker
// and no goroutine serves it) or has ended. The request side parks only
// while the reply side is parked. The moves, each one compare-and-swap:
//
//	Running        → ReplyParked    the reply side parks
//	ReplyParked    → BothParked     the request side parks
//	RequestParked  → BothParked     the reply side parks
//	ReplyParked    → Running        the workload's socket is readable
//	BothParked     → RequestParked  the workload's socket is readable
//	BothParked     → ReplyParked    the client's socket is readable (or idle sweep)
//	RequestParked  → Running        the client's socket is readable
//	Running, ReplyParked, ReplyEnded → RequestEnded   the request side ends
//	Running, RequestParked           → ReplyEnded     the reply side ends
//
// A side that ends while the other is parked takes the other over: its
// goroutine runs it to its end. Shutdown's wakeAll resumes parked sides
// as if their sockets were readable.
const (
	// sidesRunning: both sides run.
	sidesRunning int32 = iota
	// sidesReplyParked: the request side runs, the reply side is parked.
	sidesReplyParked
	// sidesBothParked: no goroutine serves the connection; the parker
	// resumes the side whose socket becomes readable first.
	sidesBothParked
	// sidesRequestParked: the reply side runs (the parker resumed it),
	// the request side is parked.
	sidesRequestParked
	// sidesRequestEnded: the request side has ended; the reply side runs
	// to its end and never parks again.
	sidesRequestEnded
	// sidesReplyEnded: the reply side has ended; the request side runs
	// to its end and never parks again.
	sidesReplyEnded
)

// park moves s's state for parking a side (req: the request side): true
// when the side may park.
func (s *sessionSides) park(req bool) bool {
	for {
		st := s.sides.Load()
		var to int32
		switch {
		case !req && st == sidesRunning:
			to = sidesReplyParked
		case !req && st == sidesRequestParked:
			to = sidesBothParked
		case req && st == sidesReplyParked:
			to = sidesBothParked
		default:
			return false
		}
		if s.sides.CompareAndSwap(st, to) {
			return true
		}
	}
}

// unpark moves s's state for resuming a parked side: true when this call
// took the side back (its caller then runs it), false when it was not
// parked (another goroutine runs it or it was taken over).
func (s *sessionSides) unpark(req bool) bool {
	for {
		st := s.sides.Load()
		var to int32
		switch {
		case !req && st == sidesReplyParked:
			to = sidesRunning
		case !req && st == sidesBothParked:
			to = sidesRequestParked
		case req && st == sidesBothParked:
			to = sidesReplyParked
		case req && st == sidesRequestParked:
			to = sidesRunning
		default:
			return false
		}
		if s.sides.CompareAndSwap(st, to) {
			return true
		}
	}
}

// replyMayPark: the reply side may park in the current state.
func (s *sessionSides) replyMayPark() bool {
	st := s.sides.Load()
	return st == sidesRunning || st == sidesRequestParked
}

// parker holds the sides of idle L7 connections, so that an idle
// connection keeps no goroutine. A reply side silent for parkAfter, with no
// bytes held, registers the workload's socket in the parker's own epoll
// instance (one-shot, for input or hang-up) and its goroutine exits; a
// request side silent for parkAfter, with nothing held, once the reply
// side is parked, does the same with the client's socket. When a socket
// becomes readable the parker starts a goroutine for its side (the other
// stays parked). Sockets are found by a park id in the event's data, never
// by file descriptor number (which a closed socket's successor may reuse);
// a closed socket leaves the epoll instance by itself. With no goroutine
// left, the parker also enforces Limits.IdleTimeout on connections whose
// both sides are parked (sweep), and resumes every parked side when a
// shutdown closes the connections (wakeAll).
type parker struct {
	epfd, evfd int // the epoll instance, and an eventfd that stops run
	log        *slog.Logger
	// idle is Limits.IdleTimeout (<= 0: none).
	idle time.Duration

	mu     sync.Mutex
	next   uint64
	parked map[uint64]parkedSide
	// resume starts a side again; Start sets it (tracked by the proxy's
	// wait group).
	resume func(s *session, req bool)
}

// parkedSide is one parked side: a session's request or reply side.
type parkedSide struct {
	s   *session
	req bool
}

// newParker opens the parker's epoll instance and stop eventfd.
func newParker(log *slog.Logger, idle time.Duration, resume func(*session, bool)) (*parker, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	const efdCloexec, efdNonblock = 0x80000, 0x800
	evfd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, efdCloexec|efdNonblock, 0)
	if e != 0 {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("eventfd2: %w", e)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // data 0: stop
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(evfd), &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(int(evfd))
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	return &parker{epfd: epfd, evfd: int(evfd), log: log, idle: idle, parked: make(map[uint64]parkedSide), resume: resume}, nil
}

// sweepEvery is how often the parker looks for connections idle beyond
// idle: an eighth of it, within [50ms, 1min] (-1: never).
func (k *parker) sweepEvery() time.Duration {
	if k.idle <= 0 {
		return -1
	}
	return min(max(k.idle/8, 50*time.Millisecond), time.Minute)
}

// run waits for parked sockets to become readable and resumes their
// sides, until stop. It blocks one OS thread in epoll_wait.
func (k *parker) run() {
	var events [64]syscall.EpollEvent
	every := k.sweepEvery()
	timeout := -1
	if every > 0 {
		timeout = int(every.Milliseconds())
	}
	last := time.Now()
	for {
		n, err := syscall.EpollWait(k.epfd, events[:], timeout)
		if err != nil {
			if !errors.Is(err, syscall.EINTR) {
				k.log.Error("proxy: parker epoll_wait", "err", err)
				return
			}
			n = 0
		}
		for i := range n {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if id == 0 {
				return
			}
			k.mu.Lock()
			ps, ok := k.parked[id]
			delete(k.parked, id)
			k.mu.Unlock()
			if ok && ps.s.unpark(ps.req) {
				k.resume(ps.s, ps.req)
			}
		}
		if every > 0 && time.Since(last) >= every {
			last = time.Now()
			k.sweep(last.UnixNano())
		}
	}
}

// sweep resumes the request side of every connection whose both sides are
// parked and which has been idle for k.idle: it then ends on the idle
// limit as a running one does.
func (k *parker) sweep(now int64) {
	var woken []parkedSide
	k.mu.Lock()
	for id, ps := range k.parked {
		if ps.req && ps.s.sides.Load() == sidesBothParked && now >= ps.s.lastActive.Load()+int64(k.idle) {
			delete(k.parked, id)
			woken = append(woken, ps)
		}
	}
	k.mu.Unlock()
	k.resumeAll(woken)
}

// wakeAll resumes every parked side. Shutdown calls it after closing the
// connections left (a closed socket leaves the epoll instance without an
// event), so that each session sees its closed sockets and ends.
func (k *parker) wakeAll() {
	k.mu.Lock()
	woken := make([]parkedSide, 0, len(k.parked))
	for id, ps := range k.parked {
		delete(k.parked, id)
		woken = append(woken, ps)
	}
	k.mu.Unlock()
	k.resumeAll(woken)
}

// resumeAll resumes the sides taken out of the map that are still parked.
func (k *parker) resumeAll(woken []parkedSide) {
	for _, ps := range woken {
		if ps.s.unpark(ps.req) {
			k.resume(ps.s, ps.req)
		}
	}
}

// stop ends run and closes the parker's descriptors once run returned
// (the caller waits for it first).
func (k *parker) stop() {
	one := uint64(1)
	_, _ = syscall.Write(k.evfd, (*[8]byte)(unsafe.Pointer(&one))[:])
}

// close releases the descriptors; run must have returned.
func (k *parker) close() {
	_ = syscall.Close(k.epfd)
	_ = syscall.Close(k.evfd)
}

// park parks one side of s (req: the request side, whose socket is the
// client's): it returns true when the goroutine may exit (the parker will
// resume the side, or another goroutine took it over), false when the
// state does not allow it any more or the socket could not be registered
// (the caller keeps reading).
func (k *parker) park(s *session, req bool) bool {
	s.releaseSide(req)
	k.mu.Lock()
	k.next++
	id := k.next
	k.parked[id] = parkedSide{s: s, req: req}
	k.mu.Unlock()
	c, reg := s.upstream, &s.registered
	if req {
		c, reg = s.client, &s.reqRegistered
		s.reqParkID.Store(id)
	} else {
		s.parkID.Store(id)
	}
	if !s.park(req) {
		k.forget(id)
		return false
	}
	// From here the other side may end and take this one over:
	// registering a socket it already reads from is harmless (an event
	// for a forgotten id is ignored).
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(id)),
		Pad:    int32(uint32(id >> 32)),
	}
	rc, err := c.SyscallConn()
	var cerr error
	first := false
	if err == nil {
		err = rc.Control(func(fd uintptr) {
			op := syscall.EPOLL_CTL_MOD
			if !reg.Swap(true) {
				op, first = syscall.EPOLL_CTL_ADD, true
			}
			if cerr = syscall.EpollCtl(k.epfd, op, int(fd), &ev); cerr != nil && op == syscall.EPOLL_CTL_ADD {
				reg.Store(false)
			}
		})
	}
	if err == nil {
		err = cerr
	}
	if err != nil {
		k.log.Debug("proxy: cannot park a connection", "err", err)
		k.forget(id)
		// Take the side back unless another goroutine took it.
		return !s.unpark(req)
	}
	if first && !req {
		// The connection fell silent for the first time: from now
		// on TCP watches for a dead peer (keepalive.go).
		armKeepAlive(s.client)
		armKeepAlive(s.upstream)
	}
	return true
}

// forget drops a parked side's id.
func (k *parker) forget(id uint64) {
	k.mu.Lock()
	delete(k.parked, id)
	k.mu.Unlock()
}

// sessionSides is what a session keeps for parking; embedded in session.
type sessionSides struct {
	// sides is one of the sides* states.
	sides atomic.Int32
	// parkID and reqParkID are the ids of the last park of the reply
	// and the request side.
	parkID, reqParkID atomic.Uint64
	// registered, reqRegistered: the workload's, the client's socket is
	// in the parker's epoll instance (disabled after each one-shot
	// event; re-armed with MOD).
	registered, reqRegistered atomic.Bool
	// reqSeen: the client has sent something (set when the request side
	// parks, which it does only then), so that a resumed request side is
	// not bound by FirstMessageTimeout again.
	reqSeen bool
	// repDone is closed when the reply side has ended for good.
	repDone chan struct{}
	// t is the proxy's record of the connection, released when the
	// session ends (finish).
	t *tracked
}

// runRequests runs the request side until it parks, or to its end: it then
// runs or waits for the end of the reply side and ends the session.
func (s *session) runRequests(buf []byte, n int) {
	if s.requestSide(buf, n) {
		return
	}
	if s.endRequestSide() {
		// The reply side was parked: this goroutine runs it to its end.
		s.runReplies(nil, 0)
	}
	<-s.repDone
	s.finish()
}

// runReplies runs the reply side until it parks, or to its end: it then
// closes repDone and, when the request side was parked, runs it to its end
// (which ends the session).
func (s *session) runReplies(buf []byte, n int) {
	if s.replySide(buf, n) {
		return
	}
	close(s.repDone)
	if s.endReplySide() {
		s.runRequests(nil, 0)
	}
}

// endRequestSide marks the request side ended; when the reply side was
// parked it takes it over: the caller then runs it to its end.
func (s *session) endRequestSide() (takeOver bool) {
	for {
		st := s.sides.Load()
		if !s.sides.CompareAndSwap(st, sidesRequestEnded) {
			continue
		}
		if st != sidesReplyParked {
			return false
		}
		if k := s.p.parker; k != nil {
			k.forget(s.parkID.Load())
		}
		return true
	}
}

// endReplySide marks the reply side ended; when the request side was
// parked it takes it over: the caller then runs it to its end.
func (s *session) endReplySide() (takeOver bool) {
	for {
		st := s.sides.Load()
		switch st {
		case sidesRunning, sidesRequestParked:
		default:
			// The request side has ended and waits for repDone.
			return false
		}
		if !s.sides.CompareAndSwap(st, sidesReplyEnded) {
			continue
		}
		if st != sidesRequestParked {
			return false
		}
		if k := s.p.parker; k != nil {
			k.forget(s.reqParkID.Load())
		}
		return true
	}
}

// finish ends the session once both sides have ended: it closes both
// sockets and releases the connection (endConn) and the session's count in
// the proxy's wait group.
func (s *session) finish() {
	_ = s.client.Close()
	_ = s.upstream.Close()
	s.releaseSide(false)
	s.releaseSide(true)
	s.p.endConn(s.t)
	s.p.wg.Done()
}

// endConn releases a handled connection: untracked (and closed), no longer
// counted as active.
func (p *Proxy) endConn(t *tracked) {
	p.untrack(t)
	p.active.Add(-1)
	p.met.Active().Dec()
}

// startParker opens the proxy's parker and starts its goroutine; the
// returned function stops it once every connection has ended. Without a
// parker (the kernel refused it) idle connections keep both goroutines.
func (p *Proxy) startParker() (stop func()) {
	k, err := newParker(p.log, p.lim.IdleTimeout, func(s *session, req bool) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if req {
				s.runRequests(nil, 0)
			} else {
				s.runReplies(nil, 0)
			}
		}()
	})
	if err != nil {
		p.log.Warn("proxy: idle connections keep two goroutines", "err", err)
		return func() {}
	}
	p.parker = k
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.run()
	}()
	return func() {
		k.stop()
		<-done
		k.close()
	}
}

// mayPark reports whether the state lets r's direction park now: the
// workload's while the client's runs or is parked; the client's once the
// workload's is parked, and once the client has said something unless
// FirstMessageTimeout is off (a parked side enforces no first message).
func (r *sockReader) mayPark() bool {
	if !r.guard {
		return r.s.replyMayPark()
	}
	return r.s.sides.Load() == sidesReplyParked && (r.seen || r.s.p.lim.FirstMessageTimeout < 0)
}

// parkDeadline is when r's direction looks again whether it may park
// (UnixNano; 0: not while the state stays as it is).
func (r *sockReader) parkDeadline() int64 {
	s := r.s
	if !r.guard {
		if s.replyMayPark() {
			return r.now + int64(parkAfter)
		}
		return 0
	}
	if !r.seen && s.p.lim.FirstMessageTimeout >= 0 {
		return 0
	}
	switch s.sides.Load() {
	case sidesReplyParked:
		return r.now + int64(parkAfter)
	case sidesRunning:
		// The workload's side parks parkAfter after its last read,
		// which is at most lastActive: look a little later, and again
		// after parkAfter while it does not (a partial reply held).
		d := s.lastActive.Load() + int64(parkAfter+parkAfter/8)
		if now := time.Now().UnixNano(); d <= now {
			d = now + int64(parkAfter)
		}
		return d
	}
	return 0
}
