package mysql

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// startMariaDB runs a real mariadbd on 127.0.0.1 with a temporary data
// folder and a throwaway TLS certificate, stopped when the test ends, and
// returns its address.
func startMariaDB(t *testing.T, ctx context.Context) string {
	t.Helper()
	server, err := exec.LookPath("mariadbd")
	if err != nil {
		t.Fatal("mariadbd not installed (apt-get install mariadb-server)")
	}
	install, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		t.Fatal("mariadb-install-db not installed (apt-get install mariadb-server)")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	var user []string
	if os.Geteuid() == 0 {
		user = []string{"--user=root"}
	}
	args := append([]string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal",
		"--skip-test-db"}, user...)
	if out, err := exec.CommandContext(ctx, install, args...).CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	cert, key := writeCert(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args = append([]string{"--no-defaults", "--datadir=" + data, "--bind-address=127.0.0.1",
		"--port=" + strconv.Itoa(port), "--socket=" + filepath.Join(dir, "sock"), "--pid-file=" + filepath.Join(dir, "pid"),
		"--skip-log-bin", "--innodb-buffer-pool-size=16M", "--local-infile=1", "--max-connections=20",
		"--ssl-cert=" + cert, "--ssl-key=" + key, "--log-error=" + filepath.Join(dir, "error.log")}, user...)
	cmd := exec.Command(server, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mariadbd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if ctx.Err() != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("mariadbd did not come up: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeCert writes a self-signed certificate for localhost.
func writeCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// observed is what the parser made of one relayed connection.
type observed struct {
	mu       sync.Mutex
	requests []result
	replies  []result
	passed   bool
	err      error
}

// relay listens on 127.0.0.1 and forwards each connection to the server,
// parsing both directions with one parser the way the proxy does: bytes
// are parsed before they are forwarded, so each reply is parsed after the
// request that caused it. It returns the listener's address and a function
// that lists the connections seen so far.
func relay(t *testing.T, server string) (string, func() []*observed) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []*observed
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", server)
			if err != nil {
				c.Close()
				continue
			}
			o := &observed{}
			mu.Lock()
			conns = append(conns, o)
			mu.Unlock()
			p := NewParser()
			wg.Add(2)
			go func() { defer wg.Done(); pipe(p, o, l7.DirRequest, c, s) }()
			go func() { defer wg.Done(); pipe(p, o, l7.DirReply, s, c) }()
		}
	}()
	return ln.Addr().String(), func() []*observed {
		mu.Lock()
		defer mu.Unlock()
		return append([]*observed(nil), conns...)
	}
}

// pipe copies src to dst, parsing every byte in direction dir first.
func pipe(p *Parser, o *observed, dir l7.Dir, src, dst net.Conn) {
	defer func() {
		src.Close()
		dst.Close()
	}()
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		n, err := src.Read(chunk)
		if n > 0 {
			buf = append(buf, chunk[:n]...)
			o.mu.Lock()
			for !o.passed && o.err == nil {
				var f l7.Frame
				op, k, perr := p.Parse(dir, buf, &f)
				if perr != nil {
					o.err = fmt.Errorf("%v: %w", dir, perr)
					break
				}
				if op == l7.OpMore {
					break
				}
				if op == l7.OpPass {
					o.passed = true
					break
				}
				r := result{Op: op, N: k}
				if op == l7.OpFrame {
					r.Verb, r.Sub, r.Aux = string(f.Verb), string(f.Sub), string(f.Aux)
					f.Resources(func(b []byte) bool { r.Res = append(r.Res, string(b)); return true })
					r.Overflow, r.NoReply, r.Partial, r.FErr = f.Overflow, f.NoReply, f.Partial, f.Err
				}
				if dir == l7.DirRequest {
					o.requests = append(o.requests, r)
				} else {
					o.replies = append(o.replies, r)
				}
				buf = buf[k:]
			}
			o.mu.Unlock()
			if _, werr := dst.Write(chunk[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				_ = tc.CloseWrite()
				return
			}
			return
		}
	}
}

// check verifies one connection: no parse error, and (unless it passed to
// TLS) one final reply frame per request frame that expects a reply.
func (o *observed) check(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		t.Fatalf("parser: %v\nrequests %v\nreplies %v", o.err, o.requests, o.replies)
	}
	if o.passed {
		return
	}
	asked, answered := 0, 0
	for _, r := range o.requests {
		if r.Op == l7.OpFrame && !r.NoReply {
			asked++
		}
	}
	for _, r := range o.replies {
		if r.Op == l7.OpFrame && !r.Partial {
			answered++
		}
	}
	if asked != answered {
		t.Fatalf("%d requests expect a reply, %d final replies\nrequests %v\nreplies %v", asked, answered, o.requests, o.replies)
	}
}

func (o *observed) frames() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, r := range o.requests {
		if r.Op == l7.OpFrame {
			out = append(out, r.String())
		}
	}
	return out
}

// TestAgainstMariaDB runs the mariadb client, mariadb-admin and sysbench
// against a real mariadbd through a relay that parses every byte, and
// checks that each command gets exactly one final reply and that the
// frames say what the commands do.
func TestAgainstMariaDB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	server := startMariaDB(t, ctx)
	addr, conns := relay(t, server)
	host, port, _ := net.SplitHostPort(addr)
	// client runs a client to its end and returns the connections it made.
	client := func(t *testing.T, name string, args ...string) []*observed {
		t.Helper()
		before := len(conns())
		bin, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("%s not installed (apt-get install mariadb-client sysbench)", name)
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Minute)
		defer ccancel()
		out, err := exec.CommandContext(cctx, bin, args...).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "ERROR 1146") && !strings.Contains(string(out), "ERROR 1305") {
			t.Fatalf("%s %q: %v\n%s", name, args, err, out)
		}
		made := conns()[before:]
		if len(made) == 0 {
			t.Fatalf("%s made no connection through the relay", name)
		}
		for _, o := range made {
			o.check(t)
		}
		return made
	}
	mariadb := []string{"-h" + host, "-P" + port, "-uroot", "--skip-ssl"}
	t.Run("mariadb client", func(t *testing.T) {
		csv := filepath.Join(t.TempDir(), "rows.csv")
		if err := os.WriteFile(csv, []byte("a,1\nb,2\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		made := client(t, "mariadb", append(mariadb, "--local-infile=1", "-e",
			"CREATE DATABASE bhtest; USE bhtest; CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20)); "+
				"INSERT INTO items VALUES (1, 'a'), (2, 'b'); SELECT * FROM items WHERE id > 0; "+
				"LOAD DATA LOCAL INFILE '"+csv+"' INTO TABLE items FIELDS TERMINATED BY ',' (name, id); "+
				"PREPARE s FROM 'SELECT name FROM items WHERE id = ?'; SET @i = 1; EXECUTE s USING @i; "+
				"SELECT * FROM no_such_table")...)
		got := strings.Join(made[0].frames(), "\n")
		for _, want := range []string{`"USE" res=["bhtest"] aux="bhtest"`, `"INSERT" res=["items"] aux="bhtest"`,
			`"SELECT" res=["items"] aux="bhtest"`, `"LOAD_DATA_LOCAL" res=["items"] aux="bhtest"`,
			`"SELECT" res=["no_such_table"] aux="bhtest"`} {
			if !strings.Contains(got, want) {
				t.Errorf("no frame %s in\n%s", want, got)
			}
		}
	})
	t.Run("multi-statement", func(t *testing.T) {
		made := client(t, "mariadb", append(mariadb, "bhtest", "--delimiter=$$", "-e",
			"SELECT 1; SELECT name FROM items; UPDATE items SET name = 'c' WHERE id = 0; CALL no_such_proc()$$")...)
		if got := strings.Join(made[0].frames(), "\n"); !strings.Contains(got, `"MULTI" sub="SELECT,UPDATE,CALL" res=["items" "no_such_proc"] aux="bhtest"`) {
			t.Errorf("frames:\n%s", got)
		}
	})
	t.Run("mariadb-admin", func(t *testing.T) {
		for _, cmd := range []string{"ping", "status", "processlist"} {
			client(t, "mariadb-admin", append(mariadb, cmd)...)
		}
	})
	t.Run("ssl", func(t *testing.T) {
		o := client(t, "mariadb", "-h"+host, "-P"+port, "-uroot", "--ssl", "--ssl-verify-server-cert=0", "-e", "SELECT 1")[0]
		if got := o.frames(); len(got) != 1 || got[0] != `frame/36 "SSL" noreply` || !o.passed {
			t.Errorf("frames %v, passed %v", got, o.passed)
		}
	})
	t.Run("sysbench prepared statements", func(t *testing.T) {
		sb := []string{"--db-driver=mysql", "--mysql-host=" + host, "--mysql-port=" + port, "--mysql-user=root",
			"--mysql-db=bhtest", "--tables=1", "--table-size=100", "--mysql-ssl=off"}
		client(t, "sysbench", append([]string{"oltp_read_write"}, append(sb, "prepare")...)...)
		made := client(t, "sysbench", append([]string{"oltp_read_write"}, append(sb, "--threads=2", "--events=40",
			"--db-ps-mode=auto", "run")...)...)
		verbs := map[string]int{}
		for _, o := range made {
			o.mu.Lock()
			for _, r := range o.requests {
				if r.Op == l7.OpFrame {
					verbs[r.Verb]++
					if r.Verb == "EXECUTE" || r.Overflow {
						t.Errorf("unknown statement: %v", r)
					}
				}
			}
			o.mu.Unlock()
		}
		for _, v := range []string{"SELECT", "UPDATE", "DELETE", "INSERT", "BEGIN", "COMMIT"} {
			if verbs[v] == 0 {
				t.Errorf("no %s among %v", v, verbs)
			}
		}
	})
}
