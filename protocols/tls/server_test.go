package tls

import (
	"bytes"
	"context"
	gotls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

const serverName = "api.example.test"

// server is a real openssl s_server with a throwaway self-signed
// certificate for serverName.
type server struct {
	addr   string
	caFile string
	roots  *x509.CertPool
}

// startServer runs openssl s_server on 127.0.0.1 (TLS 1.0 to 1.3, ALPN
// http/1.1, -www answers HTTP GETs), stopped when the test ends.
func startServer(t *testing.T) *server {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl not installed (apt-get install openssl)")
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-subj", "/CN="+serverName, "-addext", "subjectAltName=DNS:"+serverName, "-days", "1",
		"-keyout", key, "-out", cert).CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("cannot read the generated certificate")
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "s_server", "-accept", addr, "-cert", cert, "-key", key, "-www",
		"-alpn", "http/1.1", "-cipher", "DEFAULT@SECLEVEL=0", "-min_protocol", "TLSv1")
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openssl s_server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			out := log.String()
			t.Logf("s_server output (tail):\n%s", out[max(0, len(out)-2048):])
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("openssl s_server did not come up: %v\n%s", err, log.String())
		}
	}
	return &server{addr: addr, caFile: cert, roots: roots}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
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

// seen is what the relay saw of one connection.
type seen struct {
	hello  result // the ClientHello frame, or the error
	mores  int    // OpMore answers before it
	recs   int    // records that carry it
	reads  int    // reads it took
	after  result // the request parser's next answer
	reply  result // the reply parser's answer to the server's first bytes
	denied bool
}

// relay is a tiny proxy in the shape of the data plane's: per connection
// it reads the client's bytes in small reads, parses them until the
// ClientHello frame, then either answers with Deny and closes
// (CloseOnDeny) or forwards them, checks that the parser passes, gives the
// server's first bytes to a second parser (the proxy has one per
// direction) and splices the rest.
type relay struct {
	t        *testing.T
	ln       net.Listener
	upstream string
	deny     func(f *l7.Frame) bool
	seen     chan seen
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

// readSize bounds each read, so that even a small ClientHello arrives in
// pieces and the parser's OpMore path runs against real traffic.
const readSize = 64

func startRelay(t *testing.T, upstream string, deny func(f *l7.Frame) bool) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, ln: ln, upstream: upstream, deny: deny, seen: make(chan seen, 16)}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) track(c net.Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.track(c)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer c.Close()
			r.seen <- r.handle(c)
		}()
	}
}

func (r *relay) handle(client net.Conn) seen {
	var s seen
	p := NewParser()
	var f l7.Frame
	var buf []byte
	chunk := make([]byte, readSize)
	for {
		n, err := client.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if n > 0 {
			s.reads++
		}
		op, k, perr := p.Parse(l7.DirRequest, buf, &f)
		s.hello = resultOf(op, k, perr, &f)
		if perr != nil || op != l7.OpMore {
			break
		}
		s.mores++
		if err != nil {
			s.hello.Err = err
			return s
		}
	}
	if s.hello.Op != l7.OpFrame || s.hello.Err != nil {
		return s
	}
	types, _ := walkRecords(buf[:s.hello.N])
	s.recs = len(types)
	if r.deny(&f) {
		s.denied = true
		_, _ = client.Write(Deny(nil, &f, "test"))
		return s
	}
	up, err := net.Dial("tcp", r.upstream)
	if err != nil {
		s.reply.Err = err
		return s
	}
	r.track(up)
	defer up.Close()
	if _, err := up.Write(buf); err != nil {
		s.reply.Err = err
		return s
	}
	op, k, perr := p.Parse(l7.DirRequest, buf[s.hello.N:], &f)
	s.after = resultOf(op, k, perr, &f)

	first := make([]byte, 4096)
	n, err := up.Read(first)
	var rf l7.Frame
	op, k, perr = NewParser().Parse(l7.DirReply, first[:n], &rf)
	s.reply = resultOf(op, k, perr, &rf)
	if err != nil || s.reply.Op != l7.OpPass {
		return s
	}
	if _, err := client.Write(first[:n]); err != nil {
		return s
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(up, client)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(client, up)
		_ = client.(*net.TCPConn).CloseWrite()
	}()
	wg.Wait()
	return s
}

// next returns what the relay saw of the next connection.
func (r *relay) next(t *testing.T) seen {
	t.Helper()
	select {
	case s := <-r.seen:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("the relay saw no connection")
	}
	return seen{}
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not installed (apt-get install %s)", name, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// goClient dials addr with crypto/tls, its TCP segments cut at mss bytes
// when mss > 0, and returns the handshake's error.
func goClient(addr string, mss int, cfg *gotls.Config) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if mss > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, mss)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := gotls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if st := c.ConnectionState(); cfg.NextProtos != nil && st.NegotiatedProtocol != "http/1.1" {
		return fmt.Errorf("negotiated ALPN %q", st.NegotiatedProtocol)
	}
	return nil
}

// client is one real client run against the relay.
type client struct {
	name      string
	run       func(t *testing.T, srv *server, addr string) (string, error)
	sni, alpn string
	version   int
	records   bool // the ClientHello spans several records
	minLen    int  // the ClientHello's records take at least this many bytes
}

func sClient(args ...string) func(t *testing.T, srv *server, addr string) (string, error) {
	return func(t *testing.T, srv *server, addr string) (string, error) {
		return run(t, "openssl", append([]string{"s_client", "-connect", addr, "-brief", "-CAfile", srv.caFile,
			"-verify_return_error", "-verify_hostname", serverName}, args...)...)
	}
}

func goTLS(mss int, alpn ...string) func(t *testing.T, srv *server, addr string) (string, error) {
	return func(t *testing.T, srv *server, addr string) (string, error) {
		return "", goClient(addr, mss, &gotls.Config{ServerName: serverName, RootCAs: srv.roots, NextProtos: alpn})
	}
}

func curl(t *testing.T, srv *server, addr string) (string, error) {
	_, port, _ := net.SplitHostPort(addr)
	return run(t, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "--cacert", srv.caFile,
		"--resolve", serverName+":"+port+":127.0.0.1", "https://"+serverName+":"+port+"/")
}

func largeALPN() []string {
	ps := []string{"http/1.1"}
	for i := range 100 {
		ps = append(ps, fmt.Sprintf("x-bulkhead-%03d-%s", i, strings.Repeat("p", 180)))
	}
	return ps
}

func paddingALPN() string {
	ps := []string{"http/1.1"}
	for i := range 40 {
		ps = append(ps, fmt.Sprintf("x-bulkhead-padding-protocol-%02d", i))
	}
	return strings.Join(ps, ",")
}

var clients = []client{
	{name: "s_client tls1.3", run: sClient("-servername", serverName), sni: serverName, version: 0x0303},
	{name: "s_client tls1.2 upper case, final dot", run: sClient("-tls1_2", "-servername", "API.Example.Test.", "-alpn", "h2,http/1.1"), sni: serverName, alpn: "h2", version: 0x0303},
	{name: "s_client tls1.0", run: sClient("-tls1", "-cipher", "DEFAULT@SECLEVEL=0", "-servername", serverName), sni: serverName, version: 0x0301},
	{name: "s_client without SNI", run: sClient("-noservername"), version: 0x0303},
	{name: "s_client 512-byte records", run: sClient("-max_send_frag", "512", "-servername", serverName, "-alpn", paddingALPN()), sni: serverName, alpn: "http/1.1", version: 0x0303, records: true},
	{name: "curl", run: curl, sni: serverName, alpn: "h2", version: 0x0303},
	// X25519MLKEM768, Go's default since 1.24, adds a 1216-byte key share.
	{name: "go post-quantum, MSS 536", run: goTLS(536, "h2", "http/1.1"), sni: serverName, alpn: "h2", version: 0x0303, minLen: 1300},
	{name: "go large ALPN, two records", run: goTLS(0, largeALPN()...), sni: serverName, alpn: "http/1.1", version: 0x0303, records: true},
}

// TestAgainstRealPeers runs real clients (openssl s_client, curl, Go's
// crypto/tls) through the relay to a real openssl s_server: the parser must
// frame each ClientHello with the server name and ALPN protocol the client
// was told to send, pass afterwards in both directions, and the handshake,
// spliced, must complete with the certificate verified.
func TestAgainstRealPeers(t *testing.T) {
	srv := startServer(t)
	r := startRelay(t, srv.addr, func(*l7.Frame) bool { return false })
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			out, err := c.run(t, srv, r.addr())
			s := r.next(t)
			if s.hello.Err != nil || s.hello.Op != l7.OpFrame {
				t.Fatalf("relay: %v", s.hello)
			}
			if got := (result{Resource: s.hello.Resource, Aux: s.hello.Aux, Args: s.hello.Args}); got != (result{Resource: c.sni, Aux: c.alpn, Args: c.version}) {
				t.Fatalf("frame %v, want SNI %q ALPN %q version %#04x", s.hello, c.sni, c.alpn, c.version)
			}
			if s.after != pass() || s.reply != pass() {
				t.Fatalf("after the ClientHello: request %v, reply %v; want pass", s.after, s.reply)
			}
			if s.mores == 0 {
				t.Fatalf("a ClientHello of %d bytes read %d bytes at a time took no OpMore", s.hello.N, readSize)
			}
			if err != nil {
				t.Fatalf("client failed: %v\n%s", err, out)
			}
			if c.name == "curl" && out != "200" {
				t.Fatalf("curl: HTTP status %q", out)
			}
			if strings.HasPrefix(c.name, "s_client") && !strings.Contains(out, "CONNECTION ESTABLISHED") {
				t.Fatalf("s_client did not connect:\n%s", out)
			}
			if s.hello.N < c.minLen {
				t.Fatalf("ClientHello of %d bytes, want at least %d", s.hello.N, c.minLen)
			}
			if c.records != (s.recs > 1) {
				t.Fatalf("ClientHello of %d bytes in %d records", s.hello.N, s.recs)
			}
		})
	}
}

// TestDenyAgainstRealClients answers each client's ClientHello with Deny
// and closes: every client must report the access_denied alert.
func TestDenyAgainstRealClients(t *testing.T) {
	srv := startServer(t)
	r := startRelay(t, srv.addr, func(*l7.Frame) bool { return true })
	tests := []struct {
		client client
		want   string // in the client's error
	}{
		{clients[0], "alert access denied"},
		{clients[2], "alert access denied"}, // TLS 1.0: the alert in a 3.1 record
		{clients[5], "alert access denied"},
		{clients[6], "tls: access denied"},
	}
	for _, tt := range tests {
		t.Run(tt.client.name, func(t *testing.T) {
			out, err := tt.client.run(t, srv, r.addr())
			s := r.next(t)
			if !s.denied || s.hello.Resource != tt.client.sni {
				t.Fatalf("relay: %+v", s)
			}
			if err == nil {
				t.Fatalf("client succeeded:\n%s", out)
			}
			if msg := out + err.Error(); !strings.Contains(msg, tt.want) {
				t.Fatalf("client error does not mention %q: %v\n%s", tt.want, err, out)
			}
		})
	}
}
