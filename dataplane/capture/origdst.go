package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h
// (golang.org/x/sys/unix does not define it).
const ip6tSoOriginalDst = 80

var errNoLocalAddr = errors.New("capture: original destination: connection has no local TCP address")

// OriginalDst returns where a redirected connection was headed before the
// REDIRECT rule sent it to the proxy. It reads the socket option on the
// connection's own descriptor (no dup, no change of blocking mode); the only
// allocation is the syscall.RawConn that net.TCPConn.SyscallConn returns.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	la, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok || la == nil {
		return netip.AddrPort{}, errNoLocalAddr
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("capture: original destination: %w", err)
	}
	q := queries.Get().(*query)
	defer queries.Put(q)
	q.v6 = la.IP.To4() == nil
	q.errno = 0
	if err := rc.Control(q.fn); err != nil {
		return netip.AddrPort{}, fmt.Errorf("capture: original destination: %w", err)
	}
	if q.errno != 0 {
		return netip.AddrPort{}, fmt.Errorf("capture: original destination: getsockopt: %w", q.errno)
	}
	return q.dst, nil
}

// query is one getsockopt call with its result. Pooled, with fn bound once,
// so that handing fn to RawConn.Control allocates nothing.
type query struct {
	v6    bool
	dst   netip.AddrPort
	errno syscall.Errno
	fn    func(fd uintptr)
}

var queries = sync.Pool{New: func() any {
	q := &query{}
	q.fn = q.run
	return q
}}

func (q *query) run(fd uintptr) {
	if q.v6 {
		var sa unix.RawSockaddrInet6
		n := uint32(unix.SizeofSockaddrInet6)
		_, _, q.errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IPV6, ip6tSoOriginalDst,
			uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&n)), 0)
		if q.errno == 0 {
			q.dst = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port(sa.Port))
		}
		return
	}
	var sa unix.RawSockaddrInet4
	n := uint32(unix.SizeofSockaddrInet4)
	_, _, q.errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_IP, unix.SO_ORIGINAL_DST,
		uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&n)), 0)
	if q.errno == 0 {
		q.dst = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port(sa.Port))
	}
}

// port converts a sockaddr port (network byte order in memory) to a number.
func port(p uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], p)
	return binary.BigEndian.Uint16(b[:])
}
