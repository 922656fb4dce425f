package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
)

// spliceAfter is how many bytes a direction that needs no more parsing
// (L4, or passed) copies through user space before it hands the rest to
// splice(2). Splicing costs a pipe, two system calls per chunk and the
// runtime's hand-offs around them: worth it for bulk transfers, more
// expensive than one read and one write for the few small records most
// short connections carry (a TLS handshake after its ClientHello cost 74
// system calls and 14 context switches spliced, against HAProxy's 45 and
// 3, which splices only large transfers too).
const spliceAfter = 64 << 10

// pump copies src to dst until src ends (nil) or either fails: the first
// spliceAfter bytes with raw reads into a pooled buffer taken only while
// bytes are there (an idle direction holds none) and raw writes, the rest
// with io.Copy, which splices between TCP connections. It returns the bytes
// written to dst.
func pump(dst, src *net.TCPConn) (int64, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return io.Copy(dst, src)
	}
	w := newSockWriter(dst)
	var (
		buf   []byte
		m     int
		errno syscall.Errno
	)
	fill := func(fd uintptr) bool {
		for {
			if buf == nil {
				buf = getBuffer()
			}
			var e syscall.Errno
			m, e = rawRead(fd, buf)
			switch e {
			case 0:
				return true
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				putBuffer(buf)
				buf = nil
				return false
			default:
				errno = e
				return true
			}
		}
	}
	var n int64
	for n < spliceAfter {
		m, errno = 0, 0
		err := rc.Read(fill)
		if err == nil && errno != 0 {
			err = os.NewSyscallError("read", errno)
		}
		if err == nil && m > 0 {
			var k int
			k, err = w.Write(buf[:m])
			n += int64(k)
		}
		if buf != nil {
			putBuffer(buf)
			buf = nil
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, nil // end of stream
		}
	}
	k, err := io.Copy(dst, src)
	return n + k, err
}
