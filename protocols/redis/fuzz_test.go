package redis

import (
	"bytes"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// fuzzLimits are small, so that the fuzzer reaches every limit.
var fuzzLimits = Limits{MaxBulk: 64, MaxArgs: 8, MaxInline: 32, MaxDepth: 4, MaxMessage: 256}

// FuzzParseRequest checks, for any input read as a request stream: no
// panic; every answer within bounds (checkAnswer); the same answers however
// the input is split (checkSplits).
func FuzzParseRequest(f *testing.F) { fuzzParse(f, l7.DirRequest, requestCases, ".req") }

// FuzzParseReply is FuzzParseRequest for the reply direction.
func FuzzParseReply(f *testing.F) { fuzzParse(f, l7.DirReply, replyCases, ".reply") }

func fuzzParse(f *testing.F, dir l7.Dir, cases []parseCase, ext string) {
	for _, c := range cases {
		f.Add([]byte(c.in))
	}
	for _, name := range l7test.Recordings(f, ext) {
		f.Add(l7test.ReadFile(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4<<10 {
			t.Skip("large inputs add nothing the small limits do not reach")
		}
		for _, lim := range []Limits{{}, fuzzLimits} {
			whole := wholeStream(t, dir, data, lim)
			checkSplits(t, dir, data, lim, whole)
		}
	})
}

// checkSplits feeds data to one parser growing one step at a time, message
// after message, as the proxy does, and compares with whole, the answers to
// the whole input: before a message is complete every answer is OpMore
// with a count that does not overshoot the message's end (or, when the
// whole input ends in an error, possibly that same error early); when it is
// complete the answer is the same.
func checkSplits(t *testing.T, dir l7.Dir, data []byte, lim Limits, whole []result) {
	t.Helper()
	p := NewParserWithLimits(lim)
	step := 1 + len(data)/512 // bounds the work on large inputs
	c := 0                    // start of the current message
	for _, w := range whole {
		last := w.Err != nil || w.Op == l7.OpMore
		end := len(data)
		if !last {
			end = c + w.N
		}
	scan:
		for k := c; ; k = min(k+step, end) {
			got := parse(t, p, dir, data[c:k])
			switch {
			case k == end:
				if got != w {
					t.Fatalf("message at %d of %q: whole %v, fed in steps %v", c, data, w, got)
				}
				break scan
			case got.Err != nil:
				if got.Err != w.Err {
					t.Fatalf("message at %d of %q, prefix of %d: %v, but the whole input gives %v", c, data, k-c, got, w)
				}
				return
			case got.Op != l7.OpMore:
				t.Fatalf("message at %d of %q, prefix of %d: %v before the message's end (%d)", c, data, k-c, got, end)
			case !last && k+got.N > end:
				t.Fatalf("message at %d of %q, prefix of %d: more %d overshoots the end (%d)", c, data, k-c, got.N, end)
			}
		}
		if last {
			return
		}
		c = end
	}
}

// FuzzDeny checks that any command name, sub-command and reason give one
// well-formed, bounded Redis error line.
func FuzzDeny(f *testing.F) {
	f.Add([]byte("FLUSHALL"), []byte(""), "no rule allows it")
	f.Add([]byte("CONFIG"), []byte("SET"), "protect")
	f.Add([]byte("GET\r\n+OK"), []byte("\x00"), "a\r\nb")
	f.Fuzz(func(t *testing.T, verb, sub []byte, reason string) {
		out := Deny(nil, &l7.Frame{Verb: verb, Sub: sub}, reason)
		if !bytes.HasPrefix(out, []byte("-ERR bulkhead: ")) || !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("%q is not a Redis error line", out)
		}
		if bytes.ContainsAny(out[:len(out)-2], "\r\n") || len(out) > maxDenyReply {
			t.Fatalf("%q holds CR/LF or is longer than %d", out, maxDenyReply)
		}
		if r := parse(t, NewParser(), l7.DirReply, out); r != reply(len(out), 0, true) {
			t.Fatalf("%q parses as %v", out, r)
		}
	})
}
