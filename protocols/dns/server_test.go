package dns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// dnsmasqArgs is the configuration the recordings in testdata were made
// with (see testdata/README.md), without the port.
var dnsmasqArgs = []string{
	"--no-daemon", "-C", "/dev/null", "--no-resolv", "--no-hosts", "--pid-file=",
	"--listen-address=127.0.0.1", "--bind-interfaces",
	"--address=/example.test/198.18.9.9", "--address=/example.test/2001:db8::9",
	"--host-record=www.example.test,198.18.9.10,2001:db8::10",
	"--cname=alias.example.test,www.example.test", "--cname=alias2.example.test,alias.example.test",
	"--txt-record=txt.example.test,hello world,second string", "--mx-host=example.test,mail.example.test,10",
	"--auth-zone=zone.test", "--auth-server=ns.zone.test", "--host-record=host.zone.test,198.18.9.11", "--auth-peer=127.0.0.1",
}

// startDnsmasq runs a real dnsmasq on 127.0.0.1 at a free port (TCP and
// UDP), stopped with the processes it forked when the test ends, and
// returns its address.
func startDnsmasq(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatal("dnsmasq not installed (apt-get install dnsmasq-base)")
	}
	var lastLog string
	for range 5 {
		port := freePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(bin, append([]string{"--port=" + strconv.Itoa(port)}, dnsmasqArgs...)...)
		var log syncBuffer
		cmd.Stdout, cmd.Stderr = &log, &log
		// Its own process group: dnsmasq forks a child per TCP
		// connection; the cleanup ends them all.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start dnsmasq: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		up := false
	wait:
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			select {
			case <-exited:
				lastLog = log.String() // the port was taken? Try another.
				break wait
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				up = true
				break
			}
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("dnsmasq did not come up:\n%s", log.String())
			}
		}
		if up {
			t.Cleanup(stop)
			return addr
		}
	}
	t.Fatalf("dnsmasq did not start:\n%s", lastLog)
	return ""
}

// freePort returns a port that was free on 127.0.0.1 for TCP and UDP.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// relay is a small DNS proxy in the manner of bulkhead-proxy: it frames
// every query and response with one Parser per connection (UDP: per
// datagram pair), answers queries for names under "denied." with Deny
// (DenyDatagram over UDP) instead of forwarding them, and records the
// counts and the addresses Answers reports.
type relay struct {
	up  string
	ln  net.Listener
	pc  net.PacketConn
	wg  sync.WaitGroup
	mu  sync.Mutex
	st  relayStats
	err error
}

type relayStats struct {
	forwarded, final, partial, denied int
	learned                           []learned
}

func denied(f *l7.Frame) bool { return bytes.HasPrefix(f.Resource, []byte("denied.")) }

func startRelay(t *testing.T, up string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	r := &relay{up: up, ln: ln, pc: pc}
	var conns sync.Map
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer conns.Delete(c)
				r.serveTCP(c)
			}()
		}
	}()
	go func() {
		defer r.wg.Done()
		r.serveUDP()
	}()
	t.Cleanup(func() {
		ln.Close()
		pc.Close()
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		r.wg.Wait()
		if r.err != nil {
			t.Errorf("relay: %v", r.err)
		}
	})
	return r
}

func (r *relay) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

func (r *relay) stats() relayStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.learned = slices.Clone(st.learned)
	return st
}

func (r *relay) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st = relayStats{}
}

func (r *relay) learn(p *Parser) {
	p.Answers(func(name []byte, addr netip.Addr, ttl uint32) {
		r.st.learned = append(r.st.learned, learned{string(name), addr, ttl})
	})
}

// serveTCP relays one client connection: requests are framed and judged,
// replies framed, counted and forwarded whole; the client's writes are
// serialised so that a deny never lands inside a reply.
func (r *relay) serveTCP(c net.Conn) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", r.up, 5*time.Second)
	if err != nil {
		r.fail(err)
		return
	}
	defer u.Close()
	p := NewParser()
	var pmu, wmu sync.Mutex // parser; writes to the client
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := pump(u, l7.DirReply, p, &pmu, func(msg []byte, f *l7.Frame) error {
			r.mu.Lock()
			if f.Partial {
				r.st.partial++
			} else {
				r.st.final++
			}
			r.learn(p)
			r.mu.Unlock()
			wmu.Lock()
			defer wmu.Unlock()
			_, err := c.Write(msg)
			return err
		})
		if err != nil {
			r.fail(fmt.Errorf("reply direction: %w", err))
		}
		c.Close()
	}()
	err = pump(c, l7.DirRequest, p, &pmu, func(msg []byte, f *l7.Frame) error {
		if !denied(f) {
			r.mu.Lock()
			r.st.forwarded++
			r.mu.Unlock()
			_, err := u.Write(msg)
			return err
		}
		out := Deny(nil, f, "l7_not_allowed")
		r.mu.Lock()
		r.st.denied++
		r.mu.Unlock()
		wmu.Lock()
		defer wmu.Unlock()
		_, err := c.Write(out)
		return err
	})
	if err != nil && !errors.Is(err, net.ErrClosed) {
		r.fail(fmt.Errorf("request direction: %w", err))
	}
	if tc, ok := u.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
}

// pump reads src and calls fn, with the parser locked, for each frame and
// its bytes, until EOF.
func pump(src net.Conn, dir l7.Dir, p *Parser, pmu *sync.Mutex, fn func(msg []byte, f *l7.Frame) error) error {
	var buf []byte
	chunk := make([]byte, 4096)
	var f l7.Frame
	for {
		n, rerr := src.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for {
			pmu.Lock()
			op, k, err := p.Parse(dir, buf, &f)
			if err != nil {
				pmu.Unlock()
				return err
			}
			if op != l7.OpFrame {
				pmu.Unlock()
				break
			}
			err = fn(buf[:k], &f)
			pmu.Unlock()
			if err != nil {
				return err
			}
			buf = buf[k:]
		}
		if rerr == io.EOF {
			if len(buf) > 0 {
				return fmt.Errorf("%d bytes of an incomplete message at EOF", len(buf))
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// serveUDP relays datagrams one exchange at a time.
func (r *relay) serveUDP() {
	buf := make([]byte, MaxMessage)
	p := NewParser()
	var f l7.Frame
	for {
		n, from, err := r.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		msg := buf[:n]
		if err := p.ParseDatagram(l7.DirRequest, msg, &f); err != nil {
			r.fail(err)
			continue
		}
		if denied(&f) {
			r.mu.Lock()
			r.st.denied++
			r.mu.Unlock()
			_, _ = r.pc.WriteTo(DenyDatagram(nil, &f, "l7_not_allowed"), from)
			continue
		}
		reply, err := exchangeUDP(r.up, msg)
		if err != nil {
			r.fail(err)
			continue
		}
		if err := p.ParseDatagram(l7.DirReply, reply, &f); err != nil {
			r.fail(err)
			continue
		}
		r.mu.Lock()
		r.st.forwarded++
		r.st.final++
		r.learn(p)
		r.mu.Unlock()
		_, _ = r.pc.WriteTo(reply, from)
	}
}

func exchangeUDP(addr string, msg []byte) ([]byte, error) {
	u, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer u.Close()
	if err := u.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return nil, err
	}
	if _, err := u.Write(msg); err != nil {
		return nil, err
	}
	reply := make([]byte, MaxMessage)
	n, err := u.Read(reply)
	return reply[:n], err
}

// dig runs the real dig against addr and returns its output.
func dig(t *testing.T, addr string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig not installed (apt-get install bind9-dnsutils)")
	}
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"@" + host, "-p", port, "+tries=1", "+time=5"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// statuses returns the status of each answer dig printed, in order.
func statuses(out string) []string {
	var st []string
	for _, line := range strings.Split(out, "\n") {
		if _, s, ok := strings.Cut(line, "status: "); ok {
			s, _, _ = strings.Cut(s, ",")
			st = append(st, s)
		}
	}
	return st
}

// TestDigThroughRelay runs dig against dnsmasq through the relay, over TCP
// and UDP: allowed queries are answered by dnsmasq, one final reply frame
// each; denied ones get the deny reply, which dig shows as REFUSED with
// Extended DNS Error 15 when it sent EDNS; Answers reports the addresses.
func TestDigThroughRelay(t *testing.T) {
	r := startRelay(t, startDnsmasq(t))
	a := netip.MustParseAddr
	tests := []struct {
		name     string
		args     []string
		status   []string
		contains []string
		lacks    []string
		denied   int
		learned  []learned
	}{
		{name: "a", args: []string{"a.example.test", "A"}, status: []string{"NOERROR"}, contains: []string{"198.18.9.9"},
			learned: []learned{{"a.example.test", a("198.18.9.9"), 0}}},
		{name: "cname chain", args: []string{"Alias2.Example.Test", "AAAA"}, status: []string{"NOERROR"}, contains: []string{"www.example.test.", "2001:db8::10"},
			learned: []learned{{"alias2.example.test", a("2001:db8::10"), 0}}},
		{name: "several", args: []string{"+keepopen", "a.example.test", "A", "b.example.test", "AAAA", "txt.example.test", "TXT", "example.test", "MX"},
			status: []string{"NOERROR", "NOERROR", "NOERROR", "NOERROR"}, contains: []string{`"hello world"`, "mail.example.test."},
			learned: []learned{{"a.example.test", a("198.18.9.9"), 0}, {"b.example.test", a("2001:db8::9"), 0}}},
		{name: "denied", args: []string{"denied.example.test", "A"}, status: []string{"REFUSED"}, denied: 1,
			contains: []string{"EDE: 15 (Blocked): (bulkhead: l7_not_allowed)", "udp: 1232", "QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 1", ";denied.example.test."}},
		{name: "denied without edns", args: []string{"+noedns", "denied.example.test", "TXT"}, status: []string{"REFUSED"}, denied: 1,
			contains: []string{"QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 0"}, lacks: []string{"EDE", "OPT PSEUDOSECTION"}},
		{name: "denied with dnssec ok", args: []string{"+dnssec", "denied.example.test", "AAAA"}, status: []string{"REFUSED"}, denied: 1,
			contains: []string{"EDE: 15 (Blocked)", "flags: do;"}},
		{name: "denied between allowed", args: []string{"+keepopen", "a.example.test", "A", "denied.example.test", "TXT", "alias.example.test", "A"},
			status: []string{"NOERROR", "REFUSED", "NOERROR"}, denied: 1, contains: []string{"EDE: 15 (Blocked)"},
			learned: []learned{{"a.example.test", a("198.18.9.9"), 0}, {"alias.example.test", a("198.18.9.10"), 0}}},
	}
	for _, transport := range []string{"tcp", "udp"} {
		for _, tt := range tests {
			if transport == "udp" && slices.Contains(tt.args, "+keepopen") {
				continue
			}
			t.Run(transport+"/"+tt.name, func(t *testing.T) {
				r.reset()
				args := tt.args
				if transport == "tcp" {
					args = append([]string{"+tcp"}, args...)
				}
				out := dig(t, r.ln.Addr().String(), args...)
				if got := statuses(out); !slices.Equal(got, tt.status) {
					t.Fatalf("statuses %v, want %v:\n%s", got, tt.status, out)
				}
				for _, s := range tt.contains {
					if !strings.Contains(out, s) {
						t.Errorf("dig output lacks %q:\n%s", s, out)
					}
				}
				for _, s := range tt.lacks {
					if strings.Contains(out, s) {
						t.Errorf("dig output holds %q:\n%s", s, out)
					}
				}
				st := r.stats()
				want := len(tt.status) - tt.denied
				if st.forwarded != want || st.final != want || st.partial != 0 || st.denied != tt.denied {
					t.Fatalf("relay counted %+v, want %d forwarded and answered, %d denied", st, want, tt.denied)
				}
				if !slices.Equal(st.learned, tt.learned) {
					t.Fatalf("learned %v, want %v", st.learned, tt.learned)
				}
			})
		}
	}
	t.Run("tcp/axfr", func(t *testing.T) {
		r.reset()
		out := dig(t, r.ln.Addr().String(), "zone.test", "AXFR")
		if !strings.Contains(out, "XFR size: 3 records") {
			t.Fatalf("transfer failed:\n%s", out)
		}
		if st := r.stats(); st.forwarded != 1 || st.final != 1 {
			t.Fatalf("relay counted %+v", st)
		}
	})
}

// TestPipelinedQueries writes a batch of queries in one write to the relay
// (and so to dnsmasq), one of them denied, and checks that every query is
// answered exactly once, by ID, and that the replies frame one for one.
func TestPipelinedQueries(t *testing.T) {
	r := startRelay(t, startDnsmasq(t))
	names := []string{"a.example.test.", "www.example.test.", "denied.example.test.", "txt.example.test.", "alias2.example.test.", "b.example.test.", "example.test.", "c.example.test."}
	var batch []byte
	for i, n := range names {
		batch = append(batch, tcp(query(uint16(100+i), n, tA, withEDNS(false)))...)
	}
	c, err := net.DialTimeout("tcp", r.ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	p := NewParser()
	var buf []byte
	chunk := make([]byte, 4096)
	ids := map[uint16]dnsmessage.RCode{}
	for len(ids) < len(names) {
		n, err := c.Read(chunk)
		if err != nil {
			t.Fatalf("after %d replies: %v", len(ids), err)
		}
		buf = append(buf, chunk[:n]...)
		for {
			res := parse(t, p, l7.DirReply, buf)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if res.Op == l7.OpMore {
				break
			}
			var h dnsmessage.Parser
			hdr, err := h.Start(buf[2:res.N])
			if err != nil {
				t.Fatal(err)
			}
			if _, dup := ids[hdr.ID]; dup {
				t.Fatalf("ID %d answered twice", hdr.ID)
			}
			ids[hdr.ID] = hdr.RCode
			buf = buf[res.N:]
		}
	}
	for i, n := range names {
		want := dnsmessage.RCodeSuccess
		if strings.HasPrefix(n, "denied.") {
			want = dnsmessage.RCodeRefused
		}
		if got, ok := ids[uint16(100+i)]; !ok || got != want {
			t.Errorf("%s: rcode %v (answered %v), want %v", n, got, ok, want)
		}
	}
	if st := r.stats(); st.forwarded != len(names)-1 || st.final != len(names)-1 || st.denied != 1 {
		t.Fatalf("relay counted %+v", st)
	}
}

// TestRecordingsAgainstDnsmasq replays every recorded query stream to a
// fresh dnsmasq and checks that its live responses frame one final reply
// per query (TCP) and that each datagram is answered (UDP).
func TestRecordingsAgainstDnsmasq(t *testing.T) {
	addr := startDnsmasq(t)
	for _, name := range l7test.Recordings(t, ".req") {
		t.Run(filepath.Base(name), func(t *testing.T) {
			req := l7test.ReadFile(t, name)
			if strings.Contains(name, "-udp-") {
				for _, d := range datagrams(t, req) {
					reply, err := exchangeUDP(addr, d)
					if err != nil {
						t.Fatal(err)
					}
					if r := parseDatagram(t, NewParser(), l7.DirReply, reply); r.Err != nil || be16(reply) != be16(d) {
						t.Fatalf("reply %v to query %d: %q", r, be16(d), reply)
					}
				}
				return
			}
			queries := 0
			for _, r := range wholeStream(t, l7.DirRequest, req) {
				if r.Op == l7.OpFrame {
					queries++
				}
			}
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			final := 0
			rs := wholeStream(t, l7.DirReply, got)
			for _, r := range rs[:len(rs)-1] {
				if r.Err == nil && r.Op == l7.OpFrame && !r.Partial {
					final++
				}
			}
			if last := rs[len(rs)-1]; last.Err != nil || last.Op != l7.OpMore || final != queries {
				t.Fatalf("%d queries, %d final replies: %v", queries, final, rs)
			}
		})
	}
}
