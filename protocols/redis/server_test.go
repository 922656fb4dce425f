package redis

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// startRedis runs a real redis-server on a Unix socket in a temporary
// folder, stopped when the test ends, and returns a dialer.
func startRedis(t *testing.T) func() net.Conn {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not installed (apt-get install redis-server)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
		"--dir", dir, "--enable-debug-command", "yes")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	dial := func() (net.Conn, error) { return net.DialTimeout("unix", sock, time.Second) }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := dial()
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not come up: %v\n%s", err, log.Bytes())
		}
	}
	return func() net.Conn {
		t.Helper()
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// exchange writes in, then an ECHO of a marker, to a new connection and
// reads replies, framed by the reply parser, up to the marker. It returns
// the bytes before the marker and the reply answers (without the marker's).
func exchange(t *testing.T, dial func() net.Conn, in []byte) ([]byte, []result) {
	t.Helper()
	c := dial()
	const marker = "$12\r\nbulkhead-end\r\n"
	end := []byte("*2\r\n$4\r\nECHO\r\n" + marker)
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(append(append([]byte{}, in...), end...)); err != nil {
		t.Fatal(err)
	}
	p := NewParser()
	var buf []byte
	var answers []result
	consumed := 0
	chunk := make([]byte, 4096)
	for {
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
			if r.Op == l7.OpFrame && string(buf[consumed:consumed+r.N]) == marker {
				return buf[:consumed], answers
			}
			answers = append(answers, r)
			consumed += r.N
		}
		if err != nil {
			t.Fatalf("reading replies to %q: %v (got %q)", in, err, buf)
		}
	}
}

// TestAgainstRedisServer is a differential test: for inputs where the parser
// frames ECHO commands, a real redis-server must echo exactly the Resource
// the parser extracted, and where the parser skips, redis-server must stay
// silent. It pins the inline splitting and the skip rules to the server's.
func TestAgainstRedisServer(t *testing.T) {
	dial := startRedis(t)
	inputs := []string{
		"ECHO hello\r\n",
		"echo hello\n",
		"  ECHO\t  x  \r\n",
		"ECHO \"my key\"\r\n",
		"ECHO 'a b'\r\n",
		"ECHO 'a\\b'\r\n",
		"ECHO \"a'b\"\r\n",
		"ECHO \"\"\r\n",
		"ECHO a\vb\r\n",
		"ECHO a\fb\r\n",
		"ECHO\rfoo\r\n",
		"ECHO foo\r\r\n",
		"\r\n\nECHO a\r\n",
		"   \r\nECHO b\r\n",
		"*0\r\n*-1\r\n*2\r\n$4\r\nECHO\r\n$1\r\nc\r\n",
		"*2\r\n$4\r\nEcHo\r\n$4\r\na\r\nb\r\n",
		"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
	}
	for _, in := range inputs {
		t.Run(strings.ToValidUTF8(fmt.Sprintf("%q", in), "?"), func(t *testing.T) {
			ours := wholeStream(t, l7.DirRequest, []byte(in), Limits{})
			if last := ours[len(ours)-1]; last.Err != nil || last.Op != l7.OpMore {
				t.Fatalf("parser does not frame the input: %v", ours)
			}
			var want []byte
			for _, r := range ours[:len(ours)-1] {
				if r.Op != l7.OpFrame {
					continue
				}
				if !strings.EqualFold(r.Verb, "ECHO") || r.Args != 2 {
					t.Fatalf("test input must hold ECHO commands only: %v", r)
				}
				want = fmt.Appendf(want, "$%d\r\n%s\r\n", len(r.Resource), r.Resource)
			}
			got, _ := exchange(t, dial, []byte(in))
			if !bytes.Equal(got, want) {
				t.Fatalf("redis-server answered %q; the parser's frames %v predict %q", got, ours, want)
			}
		})
	}
}

// TestRecordingsAgainstRedisServer replays each recorded request stream to
// a fresh redis-server and checks that the live replies frame one for one
// with the requests.
func TestRecordingsAgainstRedisServer(t *testing.T) {
	dial := startRedis(t)
	for _, name := range l7test.Recordings(t, ".req") {
		t.Run(filepath.Base(name), func(t *testing.T) {
			req := l7test.ReadFile(t, name)
			frames := 0
			for _, r := range wholeStream(t, l7.DirRequest, req, Limits{}) {
				if r.Op == l7.OpFrame {
					frames++
				}
			}
			_, replies := exchange(t, dial, req)
			got := 0
			for _, r := range replies {
				if r.Op == l7.OpFrame {
					got++
				}
			}
			if got != frames {
				t.Fatalf("%d requests, %d reply frames: %v", frames, got, replies)
			}
		})
	}
}
