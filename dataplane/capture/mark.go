package capture

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// MarkControl returns a net.Dialer / net.ListenConfig Control function that
// sets SO_MARK to mark on the socket before it connects, so that the
// outbound redirect (which returns for this mark) leaves it alone. Setting
// SO_MARK needs CAP_NET_ADMIN. A mark of 0 returns nil (no Control).
func MarkControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("capture: set SO_MARK %#x: %w", mark, err)
		}
		return nil
	}
}
