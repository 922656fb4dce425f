package memcached

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// startMemcached runs a real memcached on a Unix socket in a temporary
// folder, stopped when the test ends, and returns a dialer.
func startMemcached(t *testing.T) func() net.Conn {
	t.Helper()
	bin, err := exec.LookPath("memcached")
	if err != nil {
		t.Fatal("memcached not installed (apt-get install memcached)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "memcached.sock")
	args := []string{"-s", sock, "-a", "0700", "-U", "0", "-m", "64", "-t", "1"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root") // memcached refuses root without -u
	}
	cmd := exec.Command(bin, args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start memcached: %v", err)
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
			t.Fatalf("memcached did not come up: %v\n%s", err, log.Bytes())
		}
	}
	return func() net.Conn {
		t.Helper()
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// replies parses what the server sends on c, calling stop for each answer,
// until stop returns true or the server closes the connection. It returns
// the answers before the one stop ended on.
func replies(t *testing.T, c net.Conn, stop func(r result, frame []byte) bool) []result {
	t.Helper()
	p := NewParser()
	var buf []byte
	var out []result
	consumed := 0
	chunk := make([]byte, 4096)
	for {
		n, err := c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for {
			r := parse(t, p, l7.DirReply, buf[consumed:])
			if r.Err != nil {
				t.Fatalf("reply parser: %v on %.200q", r.Err, buf[consumed:])
			}
			if r.Op == l7.OpMore {
				break
			}
			if stop(r, buf[consumed:consumed+r.N]) {
				return out
			}
			out = append(out, r)
			consumed += r.N
		}
		if errors.Is(err, io.EOF) {
			if consumed != len(buf) {
				t.Fatalf("connection closed inside a reply: %.200q", buf[consumed:])
			}
			return out
		}
		if err != nil {
			t.Fatalf("reading replies: %v (got %d bytes, %d framed)", err, len(buf), consumed)
		}
	}
}

// isMN reports whether an answer is the MN that ends a test's requests.
func isMN(_ result, frame []byte) bool { return string(frame) == "MN\r\n" }

// TestRecordingsAgainstMemcached replays each recorded request stream to a
// real memcached and checks that the live replies give one answer per
// request that expects one, as in the recordings (TestRecorded): once that
// many answers have come, a fence (mn, binary noop) is sent, and the next
// answer must be the fence's, unless memcached closed the connection (the
// stream ended with quit).
func TestRecordingsAgainstMemcached(t *testing.T) {
	dial := startMemcached(t)
	extra := map[string]int{"meta-commands": 2}
	for _, pr := range recordedPairs(t) {
		if pr.name == "watch" {
			continue // memcached stops reading after watch
		}
		t.Run(pr.name, func(t *testing.T) {
			reqs := wholeStream(t, l7.DirRequest, pr.req, Limits{})
			expected, _, _ := counts(reqs, nil)
			expected += extra[pr.name]
			fence, isFence := []byte("mn\r\n"), func(b []byte) bool { return string(b) == "MN\r\n" }
			if pr.req[0] == magicRequest {
				fence = []byte(binReq(opNoop, "", "", "", 0xfe))
				isFence = func(b []byte) bool {
					return len(b) == headerLen && b[1] == opNoop && readHeader(b).opaque == 0xfe
				}
			}
			quits := false // memcached closes the connection at quit
			for _, r := range reqs {
				quits = quits || r.Verb == "quit" || r.Verb == "quitq"
			}
			c := dial()
			if _, err := c.Write(pr.req); err != nil {
				t.Fatal(err)
			}
			answers := 0
			fenced := false
			replies(t, c, func(r result, frame []byte) bool {
				if r.Op != l7.OpFrame || r.Partial {
					return false
				}
				if fenced {
					if !isFence(frame) {
						t.Fatalf("answer %.200q after the %d expected ones", frame, expected)
					}
					return true
				}
				answers++
				if answers == expected && !quits {
					// Sent only now: memcached does not read past a
					// metadump until more input arrives.
					if _, err := c.Write(fence); err != nil {
						t.Fatal(err)
					}
					fenced = true
				}
				return false
			})
			if answers != expected {
				t.Fatalf("%d requests expect an answer (%+d known), memcached gave %d", expected-extra[pr.name], extra[pr.name], answers)
			}
		})
	}
}

// TestAnswersAgainstMemcached is a differential test of NoReply: for each
// input, memcached must send exactly one answer per request frame that is
// not NoReply before the MN of a final mn.
func TestAnswersAgainstMemcached(t *testing.T) {
	dial := startMemcached(t)
	inputs := []string{
		"set k 0 0 1\r\nx\r\nset k 0 0 1 noreply\r\ny\r\nget k\r\n",
		"set k 0 0 1 junk\r\nx\r\n",
		"set k 0 0\r\nset k 0 0 1 noreply x\r\n",
		"add k 0 0 1 noreply\r\nx\r\nreplace nokey 0 0 1 noreply\r\nx\r\n",
		"append k 0 0 1 noreply\r\nx\r\nprepend k 0 0 1 noreply\r\nx\r\n",
		"cas k 0 0 1 1 noreply\r\nx\r\ncas k 0 0 1 1\r\nx\r\n",
		"incr n 1\r\nincr n 1 noreply\r\nincr n noreply\r\nincr\r\n",
		"set n 0 0 1\r\nz\r\nincr n 1 noreply\r\ndecr n 1 noreply\r\n",
		"touch k 10 noreply\r\ntouch k abc noreply\r\ntouch k\r\n",
		"delete k noreply\r\ndelete k 0 noreply\r\ndelete k 5 noreply\r\ndelete k 5\r\ndelete k 0 noreply x\r\n",
		"flush_all noreply\r\nflush_all 0 noreply\r\nflush_all x noreply\r\nflush_all 1 2 noreply\r\n",
		"verbosity 0 noreply\r\nverbosity x noreply\r\nverbosity noreply\r\nverbosity 1 2 noreply\r\n",
		"cache_memlimit 1 noreply\r\ncache_memlimit 64 noreply\r\n",
		"lru mode flat noreply\r\nlru bogus noreply\r\nslabs automove 1 noreply\r\nslabs automove 9 noreply\r\n",
		"slabs reassign 1 2 noreply\r\nextstore item_size 10 noreply\r\n",
		"foo noreply\r\nGET k\r\nget noreply\r\nstats noreply\r\n\r\n\n   \r\n",
		"gat 10 k\r\ngats 10\r\nbget k\r\nget\r\nversion\r\n",
		"ms k 1 T0\r\nx\r\nmg k v\r\nmd k\r\nma k\r\nme k\r\nmg\r\nmx\r\nms k\r\nms\r\n",
		"ms k 1" + strings.Repeat(" O1", 16) + "\r\nx\r\n",
		binReq(opGet, "k", "", "", 1),
	}
	for _, in := range inputs {
		t.Run(strings.ToValidUTF8(fmt.Sprintf("%.60q", in), "?"), func(t *testing.T) {
			reqs := wholeStream(t, l7.DirRequest, []byte(in), Limits{})
			if last := reqs[len(reqs)-1]; last.Err != nil || last.Op != l7.OpMore {
				t.Fatalf("parser does not frame the input: %v", reqs)
			}
			if in[0] == magicRequest {
				return // binary: covered by the recordings
			}
			expected, quiet, _ := counts(reqs, nil)
			if quiet > 0 {
				t.Fatal("no quiet meta commands here: they cannot be counted")
			}
			c := dial()
			if _, err := c.Write([]byte(in + "mn\r\n")); err != nil {
				t.Fatal(err)
			}
			got := replies(t, c, isMN)
			_, _, answers := counts(nil, got)
			if answers != expected {
				t.Fatalf("parser expects %d answers, memcached gave %d: %v\nrequests %v", expected, answers, got, reqs)
			}
		})
	}
}

// TestStrictnessAgainstMemcached shows why the parser refuses some
// requests outright: memcached would answer them with an error and then
// read their data block as commands, which the parser would have skipped
// as data. Each input must be an error for the parser and give memcached
// more answers than requests.
func TestStrictnessAgainstMemcached(t *testing.T) {
	dial := startMemcached(t)
	inputs := []struct {
		in      string
		answers int // memcached's answers before the MN
	}{
		{"set " + strings.Repeat("k", 251) + " 0 0 5\r\nstats\r\n", 2},
		{"set k 0 0 x\r\nstats\r\n", 2},
		{"set k 0 0 -1\r\nstats\r\n", 2},
		{"ms k 1" + strings.Repeat(" O1", 17) + "\r\nx\r\n", 2},
	}
	for _, tt := range inputs {
		t.Run(fmt.Sprintf("%.40q", tt.in), func(t *testing.T) {
			rs := wholeStream(t, l7.DirRequest, []byte(tt.in), Limits{})
			if last := rs[len(rs)-1]; last.Err == nil {
				t.Fatalf("parser accepts %q: %v", tt.in, rs)
			}
			c := dial()
			if _, err := c.Write([]byte(tt.in + "mn\r\n")); err != nil {
				t.Fatal(err)
			}
			got := 0
			for _, r := range replies(t, c, isMN) {
				if r.Op == l7.OpFrame && !r.Partial {
					got++
				}
			}
			if got != tt.answers {
				t.Fatalf("memcached gave %d answers, want %d", got, tt.answers)
			}
		})
	}
}
