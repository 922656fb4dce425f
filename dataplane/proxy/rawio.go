package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// The L7 path's reads and writes are system calls made with
// syscall.RawSyscall rather than syscall.Syscall (which net.Conn's Read and
// Write use). Syscall tells the Go scheduler that the goroutine entered the
// kernel; the scheduler's monitor thread (sysmon) then hands the goroutine's
// processor (P) to another thread when the call lasts past its tick (20 µs
// and more), and the calling thread must get a P back when the call returns.
// For a proxy that runs with GOMAXPROCS=1 on one CPU, every such hand-off is
// pure cost: a futex wake-up, a second thread competing for the same CPU,
// context switches, and the monitor kept at its fastest tick. The sockets
// are non-blocking, so these calls never wait: they only do the kernel's
// TCP work, which no other thread could do sooner on the same CPU. Waiting
// for readiness (EAGAIN) still goes through the runtime's poller via
// syscall.RawConn, which also keeps deadlines and Close working.
// Measured with the bench harness's perf counters (redis-benchmark -P 1,
// two alternating runs of each binary): context switches per request
// 0.20-0.27 before, 0.03-0.08 after; system calls per request 4.4-4.5
// before, 4.2-4.6 after (the monitor's sleeps and futex calls go). Proxy
// CPU per HTTP request at a fixed rate fell from 28.8-29.4 µs to 24.4-25.9.
// The price, measured in the same minutes (fortio, 17-19k req/s, 16
// connections): 15-20 µs more median latency. The likely reason: with
// Syscall, a long write (on loopback it also runs the receiver's TCP
// work) lets another thread take the P and serve the next ready message
// while the kernel interleaves the two; raw calls serve messages strictly
// one after another. Kept for the CPU, which is what a sidecar pays on
// every pod; see the benchmark notes in bench/results.

// rawRead reads fd into b without telling the scheduler (see above).
func rawRead(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// sockWriter is an io.Writer over a TCP connection whose writes are raw
// system calls (see above), waiting in the runtime's poller when the socket
// buffer is full and honouring the connection's write deadline and Close
// like net.Conn.Write. Its callback is bound once, so that a write
// allocates nothing. Safe for concurrent use (writes are serialised).
type sockWriter struct {
	conn *net.TCPConn
	rc   syscall.RawConn

	mu    sync.Mutex
	b     []byte // what is left to write (callback state, under mu)
	n     int    // bytes written by this Write
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// newSockWriter returns a writer for c, or c itself when its raw
// connection cannot be had.
func newSockWriter(c *net.TCPConn) io.Writer {
	rc, err := c.SyscallConn()
	if err != nil {
		return c
	}
	w := &sockWriter{conn: c, rc: rc}
	w.fn = w.write
	return w
}

// write is the RawConn.Write callback: it writes until b is empty (true),
// the socket is full (false: wait for it to drain) or a write fails (true,
// errno set).
func (w *sockWriter) write(fd uintptr) bool {
	for len(w.b) > 0 {
		m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&w.b[0])), uintptr(len(w.b)))
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			w.errno = e
			return true
		}
		w.n += int(m)
		w.b = w.b[m:]
	}
	return true
}

// Write writes all of b, as net.Conn's Write does.
func (w *sockWriter) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b, w.n, w.errno = b, 0, 0
	err := w.rc.Write(w.fn)
	n := w.n
	w.b = nil
	if err == nil && w.errno != 0 {
		err = os.NewSyscallError("write", w.errno)
	}
	if err != nil {
		return n, &net.OpError{Op: "write", Net: "tcp", Source: w.conn.LocalAddr(), Addr: w.conn.RemoteAddr(), Err: err}
	}
	return n, nil
}
