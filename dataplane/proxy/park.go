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

// parkAfter is how long the workload side of an L7 connection reads
// nothing before its goroutine parks (see parker).
const parkAfter = time.Second

// errPark: the workload side was silent for parkAfter with nothing held;
// its goroutine may park.
var errPark = errors.New("proxy: workload side idle, parking")

// The states of a session's two sides (session.sides).
const (
	// sidesRunning: both goroutines run (or the request side alone after
	// the reply side has ended).
	sidesRunning int32 = iota
	// sidesReplyParked: the reply side's goroutine has exited; the parker
	// watches the workload's socket and starts a new one.
	sidesReplyParked
	// sidesRequestEnded: the request side has ended; the reply side runs
	// to its end and never parks again.
	sidesRequestEnded
)

// parker holds the workload sides of idle L7 connections, so that an idle
// connection keeps one goroutine (the client side's, parked in the
// runtime's poller) instead of two. A reply side silent for parkAfter, with
// no bytes held, registers the workload's socket in the parker's own epoll
// instance (one-shot, for input or hang-up) and its goroutine exits; when
// the socket becomes readable the parker starts a new goroutine for it.
// Sockets are found by a session id in the event's data, never by file
// descriptor number (which a closed socket's successor may reuse); a
// closed socket leaves the epoll instance by itself.
type parker struct {
	epfd, evfd int // the epoll instance, and an eventfd that stops run
	log        *slog.Logger

	mu     sync.Mutex
	next   uint64
	parked map[uint64]*session
	// resume starts a reply side again; Start sets it (tracked by the
	// proxy's wait group).
	resume func(*session)
}

// newParker opens the parker's epoll instance and stop eventfd.
func newParker(log *slog.Logger, resume func(*session)) (*parker, error) {
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
	return &parker{epfd: epfd, evfd: int(evfd), log: log, parked: make(map[uint64]*session), resume: resume}, nil
}

// run waits for parked sockets to become readable and resumes their
// sessions, until stop. It blocks one OS thread in epoll_wait.
func (k *parker) run() {
	var events [64]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(k.epfd, events[:], -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			k.log.Error("proxy: parker epoll_wait", "err", err)
			return
		}
		for i := range n {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if id == 0 {
				return
			}
			k.mu.Lock()
			s := k.parked[id]
			delete(k.parked, id)
			k.mu.Unlock()
			if s != nil && s.sides.CompareAndSwap(sidesReplyParked, sidesRunning) {
				k.resume(s)
			}
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

// park parks s's reply side: it returns true when the goroutine may exit
// (the parker will resume the side), false when the request side has
// ended meanwhile or the socket could not be registered (the caller keeps
// reading).
func (k *parker) park(s *session) bool {
	k.mu.Lock()
	k.next++
	id := k.next
	k.parked[id] = s
	k.mu.Unlock()
	s.parkID.Store(id)
	if !s.sides.CompareAndSwap(sidesRunning, sidesReplyParked) {
		k.forget(id)
		return false
	}
	// From here the request side may end and take the reply side over:
	// registering a socket it already reads from is harmless (an event
	// for a forgotten id is ignored).
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(id)),
		Pad:    int32(uint32(id >> 32)),
	}
	rc, err := s.upstream.SyscallConn()
	var cerr error
	if err == nil {
		err = rc.Control(func(fd uintptr) {
			op := syscall.EPOLL_CTL_MOD
			if !s.registered.Swap(true) {
				op = syscall.EPOLL_CTL_ADD
			}
			if cerr = syscall.EpollCtl(k.epfd, op, int(fd), &ev); cerr != nil && op == syscall.EPOLL_CTL_ADD {
				s.registered.Store(false)
			}
		})
	}
	if err == nil {
		err = cerr
	}
	if err != nil {
		k.log.Debug("proxy: cannot park a connection", "err", err)
		k.forget(id)
		// Take the side back unless the request side took it over.
		return !s.sides.CompareAndSwap(sidesReplyParked, sidesRunning)
	}
	return true
}

// forget drops a parked session's id.
func (k *parker) forget(id uint64) {
	k.mu.Lock()
	delete(k.parked, id)
	k.mu.Unlock()
}

// sessionSides is what a session keeps for parking; embedded in session.
type sessionSides struct {
	// sides is one of the sides* states.
	sides atomic.Int32
	// parkID is the id of the last park.
	parkID atomic.Uint64
	// registered: the workload's socket is in the parker's epoll
	// instance (disabled after each one-shot event; re-armed with MOD).
	registered atomic.Bool
	// repDone is closed when the reply side has ended for good.
	repDone chan struct{}
}

// runReplies runs the reply side until it ends, closing repDone, or parks.
func (s *session) runReplies(buf []byte, n int) {
	if s.replySide(buf, n) {
		return
	}
	close(s.repDone)
}

// endRequestSide marks the request side ended; when the reply side was
// parked it takes it over: the caller then runs it to its end.
func (s *session) endRequestSide() (takeOver bool) {
	if s.sides.Swap(sidesRequestEnded) != sidesReplyParked {
		return false
	}
	if k := s.p.parker; k != nil {
		k.forget(s.parkID.Load())
	}
	return true
}

// startParker opens the proxy's parker and starts its goroutine; the
// returned function stops it once every connection has ended. Without a
// parker (the kernel refused it) idle connections keep both goroutines.
func (p *Proxy) startParker() (stop func()) {
	k, err := newParker(p.log, func(s *session) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			s.runReplies(nil, 0)
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
