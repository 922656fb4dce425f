package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

const echoModule = "/usr/lib/nginx/modules/ngx_http_echo_module.so"

// startNginx runs a real nginx (nginx-light, with its echo module) on a
// Unix socket in a temporary folder, stopped when the test ends. It serves
// index.html and file.txt (gzip on), /echo (reads the request body and
// answers with a chunked text) and /ws (proxied to a WebSocket-like
// upstream that answers 101). It returns the socket's path.
func startNginx(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx not installed (apt-get install nginx-light)")
	}
	if _, err := os.Stat(echoModule); err != nil {
		t.Fatalf("nginx echo module missing (apt-get install nginx-light): %v", err)
	}
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for i := range 200 {
		fmt.Fprintf(&text, "line %d of a text file served by nginx\n", i)
	}
	for name, content := range map[string]string{
		"index.html": "<html><body>hello from nginx</body></html>\n",
		"file.txt":   text.String(),
	} {
		if err := os.WriteFile(filepath.Join(www, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ws := startUpgrader(t)
	sock := filepath.Join(dir, "nginx.sock")
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
load_module %[2]s;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    types { text/plain txt; text/html html; }
    server {
        listen unix:%[3]s;
        root %[4]s;
        gzip on;
        gzip_types text/plain;
        gzip_min_length 0;
        if_modified_since before;
        location /ws {
            proxy_pass http://%[5]s;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
        location /echo {
            echo_read_request_body;
            echo "read $content_length bytes";
        }
    }
}
`, dir, echoModule, sock, www, ws)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath, "-p", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not come up: %v\n%s\n%s", err, out.Bytes(), log)
		}
	}
}

// startUpgrader runs an upstream on 127.0.0.1 that answers every request
// with 101 Switching Protocols and a WebSocket text frame, then echoes. It
// is stopped when the test ends.
func startUpgrader(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == "\r\n" {
						break
					}
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello")
				io.Copy(c, r)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestRecordingsAgainstNginx replays each recorded request stream to a
// live nginx and checks that the live responses frame one final reply per
// request, with one parser seeing both directions.
func TestRecordingsAgainstNginx(t *testing.T) {
	sock := startNginx(t)
	for _, name := range recordings(t) {
		t.Run(name, func(t *testing.T) {
			reqs := l7test.ReadFile(t, "testdata/curl-7.88-"+name+".req")
			p := NewParser()
			rq := whole(t, p, l7.DirRequest, reqs)
			want := finals(rq)
			c, err := net.DialTimeout("unix", sock, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(reqs); err != nil {
				t.Fatal(err)
			}
			var buf []byte
			var answers []result
			got, consumed := 0, 0
			chunk := make([]byte, 4096)
		read:
			for got < want {
				n, err := c.Read(chunk)
				buf = append(buf, chunk[:n]...)
				for {
					r := parse(t, p, l7.DirReply, buf[consumed:])
					if r.Err != nil {
						t.Fatalf("reply parser: %v on %q", r.Err, buf[consumed:])
					}
					if r.Op == l7.OpMore {
						break
					}
					answers = append(answers, r)
					if r.Op == l7.OpPass {
						break read
					}
					if r.Op == l7.OpFrame && !r.Partial {
						got++
					}
					consumed += r.N
				}
				if err != nil {
					break
				}
			}
			if got != want {
				t.Fatalf("%d requests, %d final replies: %v\n%q", want, got, answers, buf)
			}
		})
	}
}

// relay is a stand-in for the proxy between a real client and nginx: one
// parser per connection sees both directions from two goroutines; bytes are
// forwarded once parsed (frames and skips), a request whose Resource is
// "/denied" is answered with Deny instead (the parser is told, its body is
// dropped), and after OpPass both directions are copied unparsed.
type relay struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup
	reqs     atomic.Int64 // request frames
	finals   atomic.Int64 // final reply frames, and denials
	denied   atomic.Int64
	passed   atomic.Int64 // connections that became opaque (reply side)
	mu       sync.Mutex
	errs     []error
}

func startRelay(t *testing.T, upstream string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, upstream: upstream}
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Go(func() { r.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		r.wg.Wait()
	})
	return r
}

func (r *relay) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *relay) serve(client net.Conn) {
	defer client.Close()
	up, err := net.DialTimeout("unix", r.upstream, time.Second)
	if err != nil {
		r.fail(err)
		return
	}
	defer up.Close()
	deadline := time.Now().Add(10 * time.Second)
	_ = client.SetDeadline(deadline)
	_ = up.SetDeadline(deadline)
	p := NewParser()
	var wmu sync.Mutex // serialises writes to the client
	// pmu serialises the parser's calls, as the proxy's lock does (the
	// parser serves both directions and has no lock of its own).
	var pmu sync.Mutex
	parse := func(dir l7.Dir, buf []byte, f *l7.Frame) (l7.Op, int, error) {
		pmu.Lock()
		defer pmu.Unlock()
		return p.Parse(dir, buf, f)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer up.(*net.UnixConn).CloseWrite()
		var f l7.Frame
		dropping := false
		r.pump(client, func(buf []byte) (int, bool) {
			op, n, err := parse(l7.DirRequest, buf, &f)
			switch {
			case err != nil:
				r.fail(fmt.Errorf("request: %w", err))
				return -1, false
			case op == l7.OpPass:
				return 0, true
			case op == l7.OpMore:
				return 0, false
			case op == l7.OpFrame:
				r.reqs.Add(1)
				dropping = string(f.Resource) == "/denied"
				if dropping {
					// curl waits for each response, so nothing is
					// pending: the denial goes out at once.
					r.denied.Add(1)
					pmu.Lock()
					p.Denied(&f)
					pmu.Unlock()
					wmu.Lock()
					client.Write(Deny(nil, &f, "l7_not_allowed"))
					wmu.Unlock()
					r.finals.Add(1)
					return n, false
				}
			case op == l7.OpSkip && dropping:
				return n, false
			}
			if _, err := up.Write(buf[:n]); err != nil {
				return -1, false
			}
			return n, false
		}, up)
	})
	wg.Go(func() {
		defer client.(*net.TCPConn).CloseWrite()
		var f l7.Frame
		r.pump(up, func(buf []byte) (int, bool) {
			op, n, err := parse(l7.DirReply, buf, &f)
			switch {
			case err != nil:
				r.fail(fmt.Errorf("reply: %w", err))
				return -1, false
			case op == l7.OpPass:
				r.passed.Add(1)
				return 0, true
			case op == l7.OpMore:
				return 0, false
			case op == l7.OpFrame && !f.Partial:
				r.finals.Add(1)
			}
			wmu.Lock()
			_, err = client.Write(buf[:n])
			wmu.Unlock()
			if err != nil {
				return -1, false
			}
			return n, false
		}, client)
	})
	wg.Wait()
}

// pump reads from src and hands the unconsumed bytes to step until it asks
// for more (n == 0), fails (n < 0) or passes; after a pass the rest is
// copied to dst unparsed.
func (r *relay) pump(src net.Conn, step func([]byte) (int, bool), dst net.Conn) {
	var buf []byte
	chunk := make([]byte, 1024) // small reads: bodies arrive in pieces
	for {
		n, err := src.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for len(buf) > 0 {
			k, passed := step(buf)
			if k < 0 {
				return
			}
			if passed {
				dst.Write(buf)
				io.Copy(dst, src)
				return
			}
			if k == 0 {
				break
			}
			buf = buf[k:]
		}
		if err != nil {
			return
		}
	}
}

// TestCurlThroughParsingRelay runs real curl against real nginx through a
// relay that parses both directions with one parser: every request gets
// exactly one final reply (or a denial), and denied requests leave the
// connection usable.
func TestCurlThroughParsingRelay(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not installed (apt-get install curl)")
	}
	sock := startNginx(t)
	rl := startRelay(t, sock)
	base := "http://" + rl.ln.Addr().String()
	body := filepath.Join(t.TempDir(), "body.txt")
	if err := os.WriteFile(body, bytes.Repeat([]byte("0123456789abcdef\n"), 300), 0o644); err != nil {
		t.Fatal(err)
	}
	// -w prints each transfer's status; %{num_connects} is 0 when curl
	// reused the connection.
	const w = "%{http_code} %{num_connects}\n"
	tests := []struct {
		name string
		args []string
		want string // curl's -w output
		reqs int64
		pass bool
	}{
		{"get", []string{base + "/"}, "200 1\n", 1, false},
		{"keep-alive", []string{base + "/", base + "/file.txt"}, "200 1\n200 0\n", 2, false},
		{"head keep-alive", []string{"-I", base + "/", base + "/file.txt"}, "200 1\n200 0\n", 2, false},
		{"404 and 304", []string{"-H", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT", base + "/nope", base + "/file.txt"}, "404 1\n304 0\n", 2, false},
		{"gzip chunked", []string{"--compressed", base + "/file.txt", base + "/"}, "200 1\n200 0\n", 2, false},
		{"post", []string{"-d", "a=1", base + "/echo", base + "/"}, "200 1\n405 0\n", 2, false},
		{"post chunked", []string{"-H", "Transfer-Encoding: chunked", "--data-binary", "@" + body, base + "/echo"}, "200 1\n", 1, false},
		{"expect 100-continue", []string{"-H", "Expect: 100-continue", "--data-binary", "@" + body, base + "/echo"}, "200 1\n", 1, false},
		{"denied then allowed", []string{base + "/denied", base + "/"}, "403 1\n200 0\n", 2, false},
		{"denied head then head", []string{"-I", base + "/denied", base + "/file.txt"}, "403 1\n200 0\n", 2, false},
		{"denied post drops its body", []string{"-H", "Transfer-Encoding: chunked", "--data-binary", "@" + body, base + "/denied",
			base + "/echo"}, "403 1\n200 0\n", 2, false},
		{"websocket upgrade", []string{"-m", "1", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
			"-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", base + "/ws"}, "101 1\n", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs0, finals0, pass0 := rl.reqs.Load(), rl.finals.Load(), rl.passed.Load()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			args := []string{"-s", "-w", w}
			for _, a := range tt.args {
				if strings.HasPrefix(a, base) {
					args = append(args, "-o", "/dev/null") // one per URL
				}
				args = append(args, a)
			}
			out, err := exec.CommandContext(ctx, "curl", args...).Output()
			var ee *exec.ExitError
			if err != nil && !(tt.pass && errors.As(err, &ee)) { // the upgraded connection times out
				t.Fatalf("curl %v: %v %s", tt.args, err, out)
			}
			if string(out) != tt.want {
				t.Fatalf("curl %v printed %q, want %q", tt.args, out, tt.want)
			}
			// The relay counts when it forwards; curl may be done a moment
			// earlier.
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if rl.finals.Load()-finals0 == tt.reqs && (!tt.pass || rl.passed.Load() > pass0) {
					break
				}
			}
			if q, f := rl.reqs.Load()-reqs0, rl.finals.Load()-finals0; q != tt.reqs || f != tt.reqs {
				t.Fatalf("relay saw %d requests and %d final replies, want %d", q, f, tt.reqs)
			}
			if tt.pass && rl.passed.Load() == pass0 {
				t.Fatal("the upgraded connection did not become opaque")
			}
		})
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if len(rl.errs) > 0 {
		t.Fatalf("parse errors: %v", rl.errs)
	}
}
