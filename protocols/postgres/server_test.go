package postgres

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// pgBin finds a PostgreSQL server program: on PATH, else in Debian's
// /usr/lib/postgresql/<version>/bin (the newest version).
func pgBin(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	sort.Slice(found, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[j]))))
		return vi > vj
	})
	if len(found) == 0 {
		t.Fatalf("%s not found: install PostgreSQL (apt-get install postgresql postgresql-client)", name)
	}
	return found[0]
}

// server is a real postgres serving on a Unix socket in a temporary
// folder, stopped when the test ends.
type server struct {
	dir  string // the socket's folder
	sock string // the socket
}

// startPostgres runs initdb and postgres (as the postgres system user when
// the test runs as root: the server refuses to run as root).
func startPostgres(t *testing.T) *server {
	t.Helper()
	initdb, postgres := pgBin(t, "initdb"), pgBin(t, "postgres")
	dir, err := os.MkdirTemp("", "bulkhead-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres system user (created by the postgresql package): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	command := func(ctx context.Context, name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		return cmd
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data := filepath.Join(dir, "data")
	if out, err := command(ctx, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	var log bytes.Buffer
	cmd := command(context.Background(), postgres, "-D", data, "-k", dir, "-p", "5432", "-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "max_connections=20", "-c", "shared_buffers=16MB")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	s := &server{dir: dir, sock: filepath.Join(dir, ".s.PGSQL.5432")}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := s.try(); err == nil {
			c.close()
			return s
		} else if time.Now().After(deadline) {
			t.Fatalf("postgres did not come up: %v\n%s", err, log.Bytes())
		}
		select {
		case <-done:
			t.Fatalf("postgres exited:\n%s", log.Bytes())
		default:
		}
	}
}

// try connects directly and completes a startup.
func (s *server) try() (*client, error) {
	c, err := net.DialTimeout("unix", s.sock, time.Second)
	if err != nil {
		return nil, err
	}
	cl := &client{c: c, r: bufio.NewReader(c)}
	if err := cl.startup(); err != nil {
		c.Close()
		return nil, err
	}
	return cl, nil
}

// client speaks the protocol directly, for exchanges no program makes.
type client struct {
	c net.Conn
	r *bufio.Reader
}

type message struct {
	t    byte
	body []byte
}

func (m message) String() string { return fmt.Sprintf("%c%q", m.t, m.body) }

func (c *client) close() { c.c.Close() }

func (c *client) send(msgs ...[]byte) error {
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := c.c.Write(cat(msgs...))
	return err
}

func (c *client) read() (message, error) {
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	var h [5]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return message{}, err
	}
	body := make([]byte, binary.BigEndian.Uint32(h[1:])-4)
	_, err := io.ReadFull(c.r, body)
	return message{h[0], body}, err
}

// untilReady reads messages up to and including ReadyForQuery.
func (c *client) untilReady() ([]message, error) {
	var out []message
	for {
		m, err := c.read()
		if err != nil {
			return out, err
		}
		out = append(out, m)
		if m.t == 'Z' {
			return out, nil
		}
	}
}

func (c *client) startup() error {
	if err := c.send(startupMsg("user", "postgres", "database", "postgres")); err != nil {
		return err
	}
	ms, err := c.untilReady()
	if err == nil && ms[0].t == 'E' {
		err = fmt.Errorf("startup: %s", ms[0].body)
	}
	return err
}

// types returns the message types of ms, e.g. "12TDCZ".
func types(ms []message) string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteByte(m.t)
	}
	return b.String()
}

// relay is a judging proxy for tests, built the way the data plane uses a
// parser: one Parser per connection serves both directions, each on its
// own goroutine; request frames are judged by deny (Control frames are
// not), a denied frame is answered with Deny and reported through
// Denied, skipped bytes after a denied frame are dropped, and denials keep
// their place among the replies. A denied frame that expects a reply is
// answered after the replies to the requests forwarded before it; a
// denied NoReply frame (Parse, Execute) just before the reply to the next
// request that expects one (the Sync), where the server would have put its
// own error.
type relay struct {
	ln     net.Listener
	target string
	deny   func(f *l7.Frame, raw []byte) bool
	// early places every denial after the replies to the requests
	// forwarded before it, NoReply ones too (the data plane's rule when
	// this was written), instead of before the next final reply.
	early bool

	mu    sync.Mutex
	conns []*relayConn
	wg    sync.WaitGroup
}

type relayConn struct {
	p        *Parser
	client   net.Conn
	upstream net.Conn

	mu                 sync.Mutex // pairing state and writes to the client
	forwarded, replied int
	pending            []pendingDeny
	asked, answered    int
	denied             int
	frames             []result // request frames, in order
	lastReplyErr       bool
	err                error
}

type pendingDeny struct {
	tag    int  // after the reply to request tag, or before request tag's reply
	before bool // placed before the reply that brings replied to tag
	out    []byte
}

func newRelay(t *testing.T, target string, deny func(f *l7.Frame, raw []byte) bool, early bool) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, deny: deny, early: early}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(r.close)
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) port() string {
	_, port, _ := net.SplitHostPort(r.addr())
	return port
}

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.client.Close()
		c.upstream.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("unix", r.target)
		if err != nil {
			c.Close()
			continue
		}
		rc := &relayConn{p: NewParser(), client: c, upstream: u}
		r.mu.Lock()
		r.conns = append(r.conns, rc)
		r.mu.Unlock()
		r.wg.Add(2)
		go func() {
			defer r.wg.Done()
			rc.fail(rc.requests(r.deny, r.early))
			u.(*net.UnixConn).CloseWrite()
		}()
		go func() {
			defer r.wg.Done()
			rc.fail(rc.replies())
			c.Close()
			u.Close()
		}()
	}
}

// wait waits for every connection the relay has accepted to end.
func (r *relay) wait(t *testing.T) []*relayConn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		conns := append([]*relayConn(nil), r.conns...)
		r.mu.Unlock()
		open := 0
		for _, c := range conns {
			c.mu.Lock()
			if c.err == nil {
				open++
			}
			c.mu.Unlock()
		}
		if open == 0 {
			return conns
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d relayed connections still open", open)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *relayConn) fail(err error) {
	if err == nil {
		err = io.EOF
	}
	c.mu.Lock()
	if c.err == nil || errors.Is(c.err, io.EOF) || errors.Is(c.err, net.ErrClosed) {
		if c.err == nil || !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.err = err
		}
	}
	c.mu.Unlock()
}

// pump reads src and hands the unconsumed bytes to process until EOF.
func pump(src net.Conn, process func([]byte) (int, bool, error)) error {
	buf := make([]byte, 0, 64<<10)
	tmp := make([]byte, 32<<10)
	for {
		n, err := src.Read(tmp)
		buf = append(buf, tmp[:n]...)
		used, pass, perr := process(buf)
		if perr != nil {
			return perr
		}
		buf = append(buf[:0], buf[used:]...)
		if pass {
			return errPassed
		}
		if err != nil {
			return err
		}
	}
}

var errPassed = errors.New("passed")

func (c *relayConn) requests(deny func(*l7.Frame, []byte) bool, early bool) error {
	var f l7.Frame
	dropping := false
	err := pump(c.client, func(buf []byte) (int, bool, error) {
		off := 0
		for off < len(buf) {
			op, n, err := c.p.Parse(l7.DirRequest, buf[off:], &f)
			switch {
			case err != nil:
				return off, false, err
			case op == l7.OpMore:
				return off, false, nil
			case op == l7.OpPass:
				_, err := c.upstream.Write(buf[off:])
				return len(buf), true, err
			}
			raw := buf[off : off+n]
			off += n
			if op == l7.OpSkip {
				if !dropping {
					if _, err := c.upstream.Write(raw); err != nil {
						return off, false, err
					}
				}
				continue
			}
			dropping = false
			c.mu.Lock()
			c.frames = append(c.frames, resultOf(op, n, nil, &f))
			c.mu.Unlock()
			if !f.Control && deny != nil && deny(&f, raw) {
				out := Deny(nil, &f, "test policy")
				c.p.Denied(&f)
				dropping = true
				if err := c.placeDenial(out, f.NoReply && !early); err != nil {
					return off, false, err
				}
				continue
			}
			c.mu.Lock()
			if !f.NoReply {
				c.forwarded++
				c.asked++
			}
			c.mu.Unlock()
			if _, err := c.upstream.Write(raw); err != nil {
				return off, false, err
			}
		}
		return off, false, nil
	})
	if errors.Is(err, errPassed) {
		_, err = io.Copy(c.upstream, c.client)
	}
	return err
}

func (c *relayConn) placeDenial(out []byte, noReply bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.denied++
	if noReply {
		c.pending = append(c.pending, pendingDeny{tag: c.forwarded + 1, before: true, out: out})
		return nil
	}
	if c.replied == c.forwarded && len(c.pending) == 0 {
		_, err := c.client.Write(out)
		return err
	}
	c.pending = append(c.pending, pendingDeny{tag: c.forwarded, out: out})
	return nil
}

// flush writes the pending denials due; mu is held.
func (c *relayConn) flush(final bool) error {
	for len(c.pending) > 0 {
		d := c.pending[0]
		due := (!d.before && d.tag <= c.replied) || (d.before && final && d.tag == c.replied+1)
		if !due {
			return nil
		}
		if _, err := c.client.Write(d.out); err != nil {
			return err
		}
		c.pending = c.pending[1:]
	}
	return nil
}

func (c *relayConn) replies() error {
	var f l7.Frame
	err := pump(c.upstream, func(buf []byte) (int, bool, error) {
		off := 0
		for off < len(buf) {
			op, n, err := c.p.Parse(l7.DirReply, buf[off:], &f)
			switch {
			case err != nil:
				return off, false, err
			case op == l7.OpMore:
				return off, false, nil
			case op == l7.OpPass:
				_, err := c.client.Write(buf[off:])
				return len(buf), true, err
			}
			raw := buf[off : off+n]
			off += n
			final := op == l7.OpFrame && !f.Partial
			c.mu.Lock()
			if op == l7.OpFrame {
				c.lastReplyErr = f.Err
			}
			err = c.flush(final)
			if err == nil {
				_, err = c.client.Write(raw)
			}
			if final {
				c.replied++
				c.answered++
				if err == nil {
					err = c.flush(false)
				}
			}
			c.mu.Unlock()
			if err != nil {
				return off, false, err
			}
		}
		return off, false, nil
	})
	if errors.Is(err, errPassed) {
		_, err = io.Copy(c.client, c.upstream)
	}
	return err
}

// checkPairing checks that every relayed connection got exactly one final
// reply per forwarded request that expects one (a connection that a FATAL
// error ended may miss the last).
func checkPairing(t *testing.T, conns []*relayConn) {
	t.Helper()
	if len(conns) == 0 {
		t.Fatal("no connection was relayed")
	}
	for i, c := range conns {
		c.mu.Lock()
		if !errors.Is(c.err, io.EOF) && !errors.Is(c.err, net.ErrClosed) && !errors.Is(c.err, errPassed) {
			t.Errorf("connection %d ended with %v", i, c.err)
		}
		if c.asked != c.answered && !(c.lastReplyErr && c.asked == c.answered+1) {
			t.Errorf("connection %d: %d requests expected a reply, %d final replies", i, c.asked, c.answered)
		}
		c.mu.Unlock()
	}
}

// run runs a client program with a bounded time and returns its output.
func run(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install postgresql-client", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "PGUSER=postgres", "PGDATABASE=postgres", "PGCONNECT_TIMEOUT=10"), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPsqlAndPgbenchThroughRelay runs the real clients against a real
// server through the judging relay: one final reply per request that
// expects one, on every connection.
func TestPsqlAndPgbenchThroughRelay(t *testing.T) {
	s := startPostgres(t)
	r := newRelay(t, s.sock, nil, false)
	script := filepath.Join(t.TempDir(), "session.sql")
	if err := os.WriteFile(script, []byte(`\d
CREATE TABLE t (id int primary key, name text);
INSERT INTO t VALUES (1, 'a'), (2, 'b');
BEGIN;
UPDATE t SET name = 'c' WHERE id = 2;
SELECT * FROM t;
COMMIT;
BEGIN;
SELECT 1/0;
ROLLBACK;
COPY t FROM STDIN;
3	x
4	y
\.
COPY t TO STDOUT;
SELECT 1 AS x, 'a'::text AS y \gdesc
LISTEN ch;
NOTIFY ch, 'hello';
SELECT repeat('x', 100000) AS big;
\d t
DROP TABLE t;
`), 0o644); err != nil {
		t.Fatal(err)
	}
	host := []string{"PGHOST=127.0.0.1", "PGPORT=" + r.port()}
	out, err := run(t, host, "psql", "-X", "-f", script)
	if err != nil || !strings.Contains(out, "DROP TABLE") || !strings.Contains(out, "division by zero") {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if out, err := run(t, host, "pgbench", "-i", "-s", "1", "-q"); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	for _, mode := range []string{"simple", "extended", "prepared"} {
		out, err := run(t, host, "pgbench", "-S", "-M", mode, "-t", "200", "-c", "2", "-n")
		if err != nil || !strings.Contains(out, "number of transactions actually processed: 400") {
			t.Fatalf("pgbench -M %s: %v\n%s", mode, err, out)
		}
	}
	conns := r.wait(t)
	checkPairing(t, conns)
	// Every connection began with an SSLRequest (sslmode=prefer), which
	// the server refused; the pgbench -M prepared connections executed
	// named statements with their verb.
	var executes int
	for _, c := range conns {
		if c.frames[0].Verb != "SSL" {
			t.Errorf("first frame %v, want SSL", c.frames[0])
		}
		for _, f := range c.frames {
			if f.Verb == "SELECT" && f.Resources == "pgbench_accounts" && f.NoReply && f.N == 10 {
				executes++
			}
		}
	}
	if executes < 400 {
		t.Errorf("%d Execute frames with the prepared statement's verb, want 400 or more", executes)
	}
}

// TestDenyThroughRelay checks what clients see of denials on a real
// exchange: the real psql, libpq's extended protocol (pgbench) and exact
// message sequences from a raw client.
func TestDenyThroughRelay(t *testing.T) {
	s := startPostgres(t)
	denyTable := func(name string) func(*l7.Frame, []byte) bool {
		return func(f *l7.Frame, _ []byte) bool {
			denied := false
			f.Resources(func(r []byte) bool { denied = string(r) == name; return !denied })
			return denied
		}
	}
	c, err := s.try()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.send(query("CREATE TABLE secret (a int); CREATE TABLE open (a int); INSERT INTO open VALUES (1)")); err != nil {
		t.Fatal(err)
	}
	if ms, err := c.untilReady(); err != nil || strings.ContainsRune(types(ms), 'E') {
		t.Fatalf("setup: %v %v", ms, err)
	}
	c.close()

	t.Run("psql", func(t *testing.T) {
		r := newRelay(t, s.sock, denyTable("secret"), false)
		host := []string{"PGHOST=127.0.0.1", "PGPORT=" + r.port()}
		out, _ := run(t, host, "psql", "-X", "-c", "BEGIN", "-c", "SELECT * FROM secret", "-c", "SELECT a FROM open", "-c", "COMMIT")
		for _, want := range []string{"ERROR:  bulkhead: SELECT on secret denied by policy (test policy)", "BEGIN", " a \n---\n 1\n", "COMMIT"} {
			if !strings.Contains(out, want) {
				t.Errorf("psql output lacks %q:\n%s", want, out)
			}
		}
		// \gdesc prepares through the extended protocol (Parse, Sync).
		out, _ = run(t, host, "psql", "-X", "-c", "SELECT * FROM secret \\gdesc")
		if !strings.Contains(out, "bulkhead: SELECT on secret denied by policy") {
			t.Errorf("psql \\gdesc output:\n%s", out)
		}
		checkPairing(t, r.wait(t))
	})

	t.Run("pgbench extended", func(t *testing.T) {
		// Deny the Execute only, after Parse and Bind went through: the
		// error must reach libpq in a sequence it accepts.
		r := newRelay(t, s.sock, func(f *l7.Frame, raw []byte) bool {
			return raw[0] == 'E' && denyTable("secret")(f, raw)
		}, false)
		script := filepath.Join(t.TempDir(), "s.sql")
		os.WriteFile(script, []byte("SELECT a FROM open;\nSELECT * FROM secret;\n"), 0o644)
		out, err := run(t, []string{"PGHOST=127.0.0.1", "PGPORT=" + r.port()}, "pgbench", "-n", "-M", "extended", "-t", "1", "-f", script)
		if err == nil || !strings.Contains(out, "bulkhead: SELECT on secret denied by policy") || strings.Contains(out, "lost synchronization") {
			t.Errorf("pgbench: %v\n%s", err, out)
		}
		checkPairing(t, r.wait(t))
	})

	t.Run("early placement", func(t *testing.T) {
		// Placed after the replies to the requests forwarded before it,
		// a denied Execute's error reaches the client before the
		// ParseComplete, BindComplete and RowDescription of its own
		// batch: a sequence no server sends. libpq still reports the
		// denial; placing it before the Sync's ReadyForQuery (the other
		// subtests) gives exactly what a failing server sends.
		r := newRelay(t, s.sock, func(f *l7.Frame, raw []byte) bool {
			return raw[0] == 'E' && denyTable("secret")(f, raw)
		}, true)
		script := filepath.Join(t.TempDir(), "s.sql")
		os.WriteFile(script, []byte("SELECT * FROM secret;\n"), 0o644)
		out, err := run(t, []string{"PGHOST=127.0.0.1", "PGPORT=" + r.port()}, "pgbench", "-n", "-M", "extended", "-t", "1", "-f", script)
		if err == nil || !strings.Contains(out, "bulkhead: SELECT on secret denied by policy") {
			t.Errorf("pgbench: %v\n%s", err, out)
		}
		conn, err := net.Dial("tcp", r.addr())
		if err != nil {
			t.Fatal(err)
		}
		c := &client{c: conn, r: bufio.NewReader(conn)}
		defer c.close()
		if err := c.startup(); err != nil {
			t.Fatal(err)
		}
		c.send(parseMsg("", "SELECT * FROM secret"), bindMsg("", ""), describeMsg('P', ""), executeMsg(""), syncMsg)
		if ms, err := c.untilReady(); err != nil || types(ms) != "E12TZ" {
			t.Errorf("early placement: %v %v", ms, err)
		}
	})

	t.Run("raw", func(t *testing.T) {
		// Parse of a named statement passes, so that its Execute is
		// judged on its own.
		r := newRelay(t, s.sock, func(f *l7.Frame, raw []byte) bool {
			return !(raw[0] == 'P' && raw[5] != 0) && denyTable("secret")(f, raw)
		}, false)
		conn, err := net.Dial("tcp", r.addr())
		if err != nil {
			t.Fatal(err)
		}
		c := &client{c: conn, r: bufio.NewReader(conn)}
		defer c.close()
		// A refused SSLRequest gets 'N', and the startup goes on.
		if err := c.send(sslRequest); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil || b[0] != 'N' {
			t.Fatalf("SSL answer %q %v", b, err)
		}
		if err := c.startup(); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name string
			send [][]byte
			want string // message types up to ReadyForQuery
			st   byte   // its status
		}{
			{"begin", [][]byte{query("BEGIN")}, "CZ", 'T'},
			{"denied query in a transaction", [][]byte{query("SELECT * FROM secret")}, "EZ", 'T'},
			{"the transaction goes on", [][]byte{query("SELECT a FROM open")}, "TDCZ", 'T'},
			{"denied parse", [][]byte{parseMsg("", "SELECT * FROM secret"), bindMsg("", ""), describeMsg('P', ""), executeMsg(""), syncMsg}, "EZ", 'T'},
			{"denied execute after parse and bind", [][]byte{parseMsg("s1", "SELECT * FROM secret WHERE a = $1"), syncMsg, bindMsg("", "s1", "1"), describeMsg('P', ""), executeMsg(""), syncMsg}, "1Z2TEZ", 'T'},
			{"pipeline: denied execute drops the rest", [][]byte{parseMsg("", "INSERT INTO open VALUES (2)"), bindMsg("", ""), executeMsg(""), bindMsg("", "s1", "1"), executeMsg(""), parseMsg("", "INSERT INTO open VALUES (3)"), bindMsg("", ""), executeMsg(""), syncMsg}, "12C2EZ", 'T'},
			{"what ran", [][]byte{query("SELECT count(*) FROM open")}, "TDCZ", 'T'},
			{"commit", [][]byte{query("COMMIT")}, "CZ", 'I'},
			{"server error in extended", [][]byte{parseMsg("", "SELECT 1/0"), bindMsg("", ""), executeMsg(""), syncMsg}, "1EZ", 'I'}, // 1/0 fails at Bind (constant folding)
		}
		for _, st := range steps {
			if err := c.send(st.send...); err != nil {
				t.Fatal(err)
			}
			var ms []message
			for strings.Count(types(ms), "Z") < strings.Count(st.want, "Z") {
				m, err := c.untilReady()
				ms = append(ms, m...)
				if err != nil {
					t.Fatalf("%s: %v after %v", st.name, err, ms)
				}
			}
			if got := types(ms); got != st.want || ms[len(ms)-1].body[0] != st.st {
				t.Fatalf("%s: got %v, want %s ending in status %c", st.name, ms, st.want, st.st)
			}
			if st.name == "what ran" && !bytes.Contains(ms[1].body, []byte("2")) {
				t.Fatalf("rows in open: %q, want 2 (the insert after the denial must not run)", ms[1].body)
			}
			for _, m := range ms {
				if m.t == 'E' && bytes.Contains(m.body, []byte("secret")) && !bytes.Contains(m.body, []byte("C42501\x00")) {
					t.Fatalf("%s: error %q without SQLSTATE 42501", st.name, m.body)
				}
			}
		}
		if err := c.send(terminateMsg); err != nil {
			t.Fatal(err)
		}
		c.close()
		checkPairing(t, r.wait(t))
	})
}

// TestRawExchangeThroughRelay drives every message form through the relay
// against the real server and checks the pairing and the frames.
func TestRawExchangeThroughRelay(t *testing.T) {
	s := startPostgres(t)
	r := newRelay(t, s.sock, nil, false)
	conn, err := net.Dial("tcp", r.addr())
	if err != nil {
		t.Fatal(err)
	}
	c := &client{c: conn, r: bufio.NewReader(conn)}
	defer c.close()
	if err := c.startup(); err != nil {
		t.Fatal(err)
	}
	ask := func(want string, msgs ...[]byte) []message {
		t.Helper()
		if err := c.send(msgs...); err != nil {
			t.Fatal(err)
		}
		ms, err := c.untilReady()
		if err != nil {
			t.Fatalf("%q: %v after %v", msgs, err, ms)
		}
		// Notices and parameter changes may come in between.
		var kept []message
		for _, m := range ms {
			if m.t != 'N' && m.t != 'S' && m.t != 'A' {
				kept = append(kept, m)
			}
		}
		if got := types(kept); got != want {
			t.Fatalf("%q: got %v, want %s", msgs, ms, want)
		}
		return ms
	}
	ask("CZ", query("CREATE TABLE t (a int, b text)"))
	ask("IZ", query(""))
	ask("CCZ", query("INSERT INTO t VALUES (1, 'x'); INSERT INTO t VALUES (2, 'y')"))
	ask("1Z", parseMsg("ins", "INSERT INTO t VALUES ($1, $2)", 23, 25), syncMsg)
	ask("2nCZ", bindMsg("", "ins", "3", "z"), describeMsg('P', ""), executeMsg(""), syncMsg)
	ask("tnZ", describeMsg('S', "ins"), syncMsg)
	ask("12TDsZ", parseMsg("", "SELECT a FROM t ORDER BY a"), bindMsg("c", ""), describeMsg('P', "c"), msg('E', cstr("c"), be32b(1)), syncMsg)
	ask("3Z", closeMsg('S', "ins"), syncMsg)
	ask("1EZ", parseMsg("", "SELECT * FROM t"), bindMsg("", "missing"), executeMsg(""), syncMsg)
	if err := c.send(query("COPY t FROM STDIN")); err != nil {
		t.Fatal(err)
	}
	if m, err := c.read(); err != nil || m.t != 'G' {
		t.Fatalf("COPY FROM STDIN: %v %v", m, err)
	}
	ask("CZ", msg('d', []byte("4\tw\n5\tv\n")), msg('d', []byte(strings.Repeat("6\tu\n", 10000))), msg('c'))
	ask("HdddcCZ", query("COPY (SELECT a, b FROM t ORDER BY a LIMIT 3) TO STDOUT"))
	ask("EZ", functionMsg(0, "x"))
	ask("CZ", query("LISTEN ch"))
	ask("CZ", query("NOTIFY ch, 'hi'"))
	ask("TDCZ", query("SELECT repeat('y', 100000)"))
	oid := ask("TDCZ", query("SELECT 'abs(integer)'::regprocedure::oid"))[1].body[6:]
	n, _ := strconv.Atoi(string(oid))
	if ms := ask("VZ", functionMsg(n, "-5")); string(ms[0].body) != "\x00\x00\x00\x015" {
		t.Fatalf("abs(-5) = %q", ms[0].body)
	}
	if err := c.send(terminateMsg); err != nil {
		t.Fatal(err)
	}
	c.close()
	conns := r.wait(t)
	checkPairing(t, conns)
	var verbs []string
	for _, f := range conns[0].frames {
		if !f.Control {
			verbs = append(verbs, strings.TrimSpace(f.Verb+" "+f.Resources))
		}
	}
	want := "CREATE t|INSERT t|INSERT t|INSERT t|SELECT t|SELECT t|SELECT t|EXECUTE|COPY t|COPY t|FUNCTION_CALL 0|LISTEN|NOTIFY|SELECT|SELECT|FUNCTION_CALL " + string(oid)
	if got := strings.Join(verbs, "|"); got != want {
		t.Fatalf("judged frames:\n got %s\nwant %s", got, want)
	}
}
