package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// The memcached world: memcached on api:11211 (declared "memcached" in the
// workloads file) behind bulkhead-proxy; web talks to it with a raw text
// connection and with libmemcached's memccp and memccat.
const (
	memcachedPort = 11211
	// mcDenied is bulkhead's answer to a text command no rule allows.
	mcDenied = "SERVER_ERROR access denied (l7_not_allowed)"
)

// startMemcached returns a startFunc that runs memcached in the foreground
// on every address of the host, TCP only.
func startMemcached() startFunc {
	return func(ctx context.Context, h *lab.Host) (*lab.Proc, error) {
		return h.Start(ctx, "memcached", "-l", "0.0.0.0", "-p", fmt.Sprint(memcachedPort), "-U", "0", "-u", "root", "-m", "16")
	}
}

func newMemcachedEnv(t *testing.T, ctx context.Context, n int) *serverEnv {
	t.Helper()
	needTools(t, "memcached", "memccp", "memccat")
	return newServerEnv(t, ctx, n, memcachedPort, v1alpha1.ProtocolMemcached, startMemcached())
}

// mcConn is a raw text-protocol connection from a lab host.
type mcConn struct{ *rawConn }

func dialMemcached(t *testing.T, ctx context.Context, e *serverEnv, from string) mcConn {
	t.Helper()
	return mcConn{dialRaw(t, ctx, e.Host(from), e.ServerAddr())}
}

// line reads one reply line, without its CRLF.
func (c mcConn) line() (string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	s, err := c.r.ReadString('\n')
	return strings.TrimSuffix(s, "\r\n"), err
}

// do sends one command (its line ends are added) and reads the reply up to
// the line that ends it: the first line, or END after VALUE lines and
// their data. It returns the reply's lines joined by "|".
func (c mcConn) do(cmd string) (string, error) {
	if err := c.send([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	return c.reply()
}

// reply reads one answer of the text protocol: one line, or VALUE lines
// with their data up to END.
func (c mcConn) reply() (string, error) {
	var lines []string
	l, err := c.line()
	for {
		if err != nil {
			return strings.Join(lines, "|"), fmt.Errorf("after %q: %w", lines, err)
		}
		lines = append(lines, l)
		if !strings.HasPrefix(l, "VALUE ") {
			return strings.Join(lines, "|"), nil
		}
		// The data block.
		d, err := c.line()
		if err != nil {
			return strings.Join(lines, "|"), err
		}
		lines = append(lines, d)
		if l, err = c.line(); err == nil && l == "END" {
			return strings.Join(append(lines, l), "|"), nil
		}
	}
}

// mcStep is one command of a text session and its expected reply.
type mcStep struct{ cmd, want string }

// run sends each command and checks its reply.
func (c mcConn) run(t *testing.T, what string, steps []mcStep) {
	t.Helper()
	for _, s := range steps {
		got, err := c.do(s.cmd)
		if err != nil || got != s.want {
			t.Errorf("%s: %q = %q, %v; want %q", what, s.cmd, got, err, s.want)
		}
	}
}

// mcTraffic is web's text session of discovery: the commands it uses.
var mcTraffic = []mcStep{
	{"set cart:42 0 0 6\r\napples", "STORED"},
	{"get cart:42", "VALUE cart:42 0 6|apples|END"},
	{"gets cart:nope", "END"},
	{"incr cart:42 1", "CLIENT_ERROR cannot increment or decrement non-numeric value"},
	{"set cart:visits 0 0 1\r\n0", "STORED"},
	{"incr cart:visits 1", "1"},
	{"delete cart:old", "NOT_FOUND"},
}

// mcLearned is the rule discovery must teach: one rule for web on
// memcached's port, with the commands of the text session and of
// memccp/memccat.
func mcLearned(commands ...string) []v1alpha1.Rule {
	return []v1alpha1.Rule{{
		Name:      "from-web-memcached-11211",
		Origin:    v1alpha1.OriginLearned,
		Peers:     []v1alpha1.Peer{{Segment: webHost}},
		Ports:     []v1alpha1.PortProtocol{{Port: memcachedPort, Protocol: v1alpha1.ProtocolMemcached}},
		Memcached: &v1alpha1.MemcachedMatch{Commands: commands},
	}}
}

// memcTools runs memccp (a file as a key) and memccat (the key's value)
// from web against the server and checks the value comes back.
func memcTools(t *testing.T, ctx context.Context, e *serverEnv, what string, extra ...string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "basket")
	if err := os.WriteFile(file, []byte("pears and plums"), 0o644); err != nil {
		t.Fatal(err)
	}
	servers := "--servers=" + e.ServerAddr().String()
	web := e.Host(webHost)
	// memccp stores under the file's base name; memccat prints the value
	// and a newline.
	cp := web.Command(ctx, "memccp", append([]string{servers}, append(extra, file)...)...)
	cp.Dir = dir
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("%s: memccp: %v\n%s", what, err, out)
	}
	out, errOut, code, err := runClient(ctx, web, "memccat", append([]string{servers}, append(extra, "basket")...)...)
	if err != nil || code != 0 || out != "pears and plums\n" {
		t.Fatalf("%s: memccat = %q, exit %d, %v\n%s", what, out, code, err, errOut)
	}
}

// discoverMemcached runs web's traffic in discover mode and waits for the
// learned rule.
func discoverMemcached(t *testing.T, ctx context.Context, e *serverEnv) {
	t.Helper()
	c := dialMemcached(t, ctx, e, webHost)
	c.run(t, "discover", mcTraffic)
	memcTools(t, ctx, e, "discover")
	waitIngress(t, ctx, e, mcLearned("delete", "get", "gets", "incr", "quit", "set"))
}

// TestMemcached: in discover mode web's text session (set, get, gets,
// incr, delete) and memccp/memccat (which add quit) become one learned
// rule with exactly those commands. In protect the same session and tools
// work unchanged; flush_all and stats get SERVER_ERROR access denied,
// memcached never runs them (the keys survive), and the connection carries
// the next get; memcflush fails with the denial; a binary flush gets the
// binary AUTH_ERROR status with its opaque and the binary get after it is
// answered; `bulkhead violations` lists them. In monitor flush_all runs and
// is reported.
func TestMemcached(t *testing.T) {
	ctx := testCtx(t)
	e := newMemcachedEnv(t, ctx, 40)
	discoverMemcached(t, ctx, e)

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeProtect)
	c := dialMemcached(t, ctx, e, webHost)
	c.run(t, "protect", mcTraffic)
	memcTools(t, ctx, e, "protect")
	c.run(t, "protect, flush_all", []mcStep{
		{"flush_all", mcDenied},
		{"get cart:42", "VALUE cart:42 0 6|apples|END"},
		{"flush_all 0", mcDenied},
		{"stats", mcDenied},
		{"get cart:visits", "VALUE cart:visits 0 1|1|END"},
	})
	// libmemcached's memcflush gets the denial too and says so.
	out, errOut, code, err := runClient(ctx, e.Host(webHost), "memcflush", "--servers="+e.ServerAddr().String())
	if err != nil || code == 0 {
		t.Errorf("memcflush in protect: exit %d, %v; want a failure\n%s%s", code, err, out, errOut)
	}
	if !strings.Contains(errOut, "access denied") {
		t.Errorf("memcflush does not report the denial:\n%s%s", out, errOut)
	}
	c.run(t, "after memcflush", []mcStep{{"get cart:42", "VALUE cart:42 0 6|apples|END"}})
	web := e.Host(webHost).Addr().String()
	v := waitViolation(t, ctx, e.Env, "flush_all denied", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "FLUSH_ALL" && r.Verdict == "deny"
	})
	if v.Protocol != v1alpha1.ProtocolMemcached || v.Reason != "l7_not_allowed" || v.Mode != "protect" || v.DstPort != memcachedPort {
		t.Errorf("the flush_all violation: %+v", v)
	}

	t.Run("binary", func(t *testing.T) {
		// The binary protocol on its own connection: get is allowed
		// (learned as the text get: binary opcodes are named as their
		// text commands), flush is not.
		b := dialRaw(t, ctx, e.Host(webHost), e.ServerAddr())
		if err := b.send(append(mcBinary(0x08, 7, "", nil), mcBinary(0x00, 8, "cart:42", nil)...)); err != nil {
			t.Fatal(err)
		}
		st, opaque, body, err := mcBinaryReply(b)
		if err != nil || st != 0x0020 || opaque != 7 || !strings.Contains(string(body), "access denied") {
			t.Errorf("binary flush: status %#x, opaque %d, body %q, %v; want 0x20, 7, access denied", st, opaque, body, err)
		}
		st, opaque, body, err = mcBinaryReply(b)
		if err != nil || st != 0 || opaque != 8 || !bytes.HasSuffix(body, []byte("apples")) {
			t.Errorf("binary get after the denied flush: status %#x, opaque %d, body %q, %v", st, opaque, body, err)
		}
	})

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeMonitor)
	c = dialMemcached(t, ctx, e, webHost)
	c.run(t, "monitor", []mcStep{
		{"get cart:42", "VALUE cart:42 0 6|apples|END"},
		{"flush_all", "OK"},
		{"get cart:42", "END"},
	})
	waitViolation(t, ctx, e.Env, "flush_all in monitor", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "FLUSH_ALL" && r.Verdict == "violation" && r.Mode == "monitor"
	})
	table, err := e.CLI(ctx, "violations", "-n", e.Namespace)
	if err != nil || !regexp.MustCompile(`memcached +FLUSH_ALL +deny +protect`).MatchString(table) ||
		!regexp.MustCompile(`memcached +FLUSH +deny +protect`).MatchString(table) {
		t.Errorf("bulkhead violations does not list the denials:\n%s", table)
	}
	e.serverAlive(t)
}

// mcBinary builds a binary request: opcode, opaque, key, value (no
// extras).
func mcBinary(op byte, opaque uint32, key string, value []byte) []byte {
	h := make([]byte, 24, 24+len(key)+len(value))
	h[0], h[1] = 0x80, op
	binary.BigEndian.PutUint16(h[2:], uint16(len(key)))
	binary.BigEndian.PutUint32(h[8:], uint32(len(key)+len(value)))
	binary.BigEndian.PutUint32(h[12:], opaque)
	return append(append(h, key...), value...)
}

// mcBinaryReply reads one binary response: its status, opaque and body.
func mcBinaryReply(c *rawConn) (status uint16, opaque uint32, body []byte, err error) {
	_ = c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	var h [24]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, 0, nil, err
	}
	if h[0] != 0x81 {
		return 0, 0, nil, fmt.Errorf("response magic %#x", h[0])
	}
	n := binary.BigEndian.Uint32(h[8:])
	if n > maxReply {
		return 0, 0, nil, fmt.Errorf("body of %d bytes", n)
	}
	body = make([]byte, n)
	_, err = io.ReadFull(c.r, body)
	return binary.BigEndian.Uint16(h[6:]), binary.BigEndian.Uint32(h[12:]), body, err
}
