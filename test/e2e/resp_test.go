package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/test/lab"
)

// ioTimeout bounds one write or one reply of a raw connection.
const ioTimeout = 5 * time.Second

// maxReply bounds a reply a raw connection reads, and maxDepth its nesting.
const (
	maxReply = 1 << 20
	maxDepth = 16
)

// rawConn is a TCP connection opened inside a lab host (the socket lives in
// the host's namespace, so it goes through the lab and the proxy's redirect
// like redis-cli's) that speaks RESP byte for byte.
type rawConn struct {
	c *net.TCPConn
	r *bufio.Reader
}

// dialRaw connects from h to addr; the connection is closed when the test
// ends (before the lab goes).
func dialRaw(t *testing.T, ctx context.Context, h *lab.Host, addr netip.AddrPort) *rawConn {
	t.Helper()
	dctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	c, err := h.DialContext(dctx, "tcp", addr.String())
	if err != nil {
		t.Fatalf("dial %v from %s: %v", addr, h.Name(), err)
	}
	tc := c.(*net.TCPConn)
	// Go sets TCP_NODELAY on every TCP connection; say so anyway: the
	// one-byte-per-segment test depends on it.
	if err := tc.SetNoDelay(true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	return &rawConn{c: tc, r: bufio.NewReader(tc)}
}

// command encodes args as a RESP array of bulk strings.
func command(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// send writes b in one write.
func (c *rawConn) send(b []byte) error {
	_ = c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.c.Write(b)
	return err
}

// sendBytewise writes b one byte per write, waiting gap between writes; with
// TCP_NODELAY each byte leaves in a segment of its own.
func (c *rawConn) sendBytewise(b []byte, gap time.Duration) error {
	for i := range b {
		if err := c.send(b[i : i+1]); err != nil {
			return fmt.Errorf("byte %d: %w", i, err)
		}
		time.Sleep(gap)
	}
	return nil
}

// reply reads one complete RESP2 or RESP3 reply and returns its bytes.
func (c *rawConn) reply() (string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	var b strings.Builder
	if err := readReply(c.r, &b, 0); err != nil {
		return b.String(), err
	}
	return b.String(), nil
}

// do sends one command and reads its reply.
func (c *rawConn) do(args ...string) (string, error) {
	if err := c.send(command(args...)); err != nil {
		return "", err
	}
	return c.reply()
}

// silent checks that nothing arrives within d.
func (c *rawConn) silent(d time.Duration) error {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	b, err := c.r.ReadByte()
	if err == nil {
		rest, _ := c.r.Peek(c.r.Buffered())
		return fmt.Errorf("unexpected bytes %q", append([]byte{b}, rest...))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return fmt.Errorf("connection ended: %w", err)
}

// closedByPeer waits up to d for the peer to close the connection (EOF or
// reset) and fails if any byte arrives first.
func (c *rawConn) closedByPeer(d time.Duration) error {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	n, err := c.r.Read(buf)
	switch {
	case n > 0:
		return fmt.Errorf("got %q, want the connection closed without a reply", buf[:n])
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("connection still open after %v", d)
	}
	return fmt.Errorf("read: %w (want EOF or reset)", err)
}

// readReply copies one reply from r to b, recursing into aggregates.
func readReply(r *bufio.Reader, b *strings.Builder, depth int) error {
	if depth > maxDepth {
		return errors.New("reply nested too deep")
	}
	line, err := readLine(r, b)
	if err != nil {
		return err
	}
	if len(line) == 0 {
		return errors.New("empty reply line")
	}
	switch line[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return nil
	case '$', '!', '=': // bulk string, bulk error, verbatim string
		n, err := length(line)
		if err != nil || n < 0 {
			return err
		}
		return readN(r, b, n+2)
	case '*', '~', '>', '%', '|':
		n, err := length(line)
		if err != nil || n < 0 {
			return err
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for range n {
			if err := readReply(r, b, depth+1); err != nil {
				return err
			}
		}
		if line[0] == '|' { // an attribute precedes the reply itself
			return readReply(r, b, depth+1)
		}
		return nil
	}
	return fmt.Errorf("not a RESP reply: %q", line)
}

func readLine(r *bufio.Reader, b *strings.Builder) (string, error) {
	line, err := r.ReadString('\n')
	b.WriteString(line)
	if err != nil {
		return line, err
	}
	if b.Len() > maxReply {
		return line, errors.New("reply too long")
	}
	if !strings.HasSuffix(line, "\r\n") {
		return line, fmt.Errorf("line without CR: %q", line)
	}
	return line[:len(line)-2], nil
}

func length(line string) (int, error) {
	n, err := strconv.Atoi(line[1:])
	if err != nil || n > maxReply {
		return 0, fmt.Errorf("bad length in %q", line)
	}
	return n, nil
}

func readN(r *bufio.Reader, b *strings.Builder, n int) error {
	if b.Len()+n > maxReply {
		return errors.New("reply too long")
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return err
	}
	b.Write(buf)
	return nil
}

// Replies the tests expect.
const (
	nilRep  = "$-1\r\n" // RESP2 null bulk string
	null3   = "_\r\n"   // RESP3 null
	okRep   = "+OK\r\n"
	denyFmt = "-ERR bulkhead: command '%s' is not allowed"
)

// checkDenied fails unless rep is Bulkhead's one-line -ERR for command cmd
// (lower case, as the proxy writes it).
func checkDenied(t *testing.T, what, rep string, err error, cmd string) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v (read %q)", what, err, rep)
		return
	}
	if !isDenied(rep, cmd) {
		t.Errorf("%s: reply %q, want %q…", what, rep, fmt.Sprintf(denyFmt, cmd))
	}
}

func isDenied(rep, cmd string) bool {
	return strings.HasPrefix(rep, fmt.Sprintf(denyFmt, cmd)) && strings.Count(rep, "\r\n") == 1 && strings.HasSuffix(rep, "\r\n")
}

// checkReply fails unless rep is exactly want.
func checkReply(t *testing.T, what, rep string, err error, want string) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v (read %q)", what, err, rep)
		return
	}
	if rep != want {
		t.Errorf("%s: reply %q, want %q", what, rep, want)
	}
}
