package kafka

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// FuzzParseRequest checks, for any input read as a request stream: no
// panic; every answer within bounds (checkAnswer); the same answers however
// the input is split; and for every frame, a deny reply that is empty or
// that kmsg reads as exactly the reply of the API and version.
func FuzzParseRequest(f *testing.F) {
	for _, c := range requestCases() {
		f.Add(c.in)
	}
	for _, name := range l7test.Recordings(f, ".req") {
		f.Add(l7test.ReadFile(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			t.Skip("large inputs add nothing")
		}
		checkSplits(t, nil, l7.DirRequest, data)
		checkDenials(t, data)
	})
}

// FuzzParseReply parses reqs as requests (up to the first error), then
// reps as their replies, with the same checks.
func FuzzParseReply(f *testing.F) {
	for _, name := range l7test.Recordings(f, ".req") {
		base := strings.TrimSuffix(filepath.Base(name), ".req")
		q, r := recordedPair(f, base)
		f.Add(q, r)
	}
	f.Add(metadata(12, 2, "orders"), metadataReply12(2, map[string][16]byte{"orders": {1}}))
	f.Add(apiVersions(3, 1), reply(1, []byte{0, 0}))
	f.Fuzz(func(t *testing.T, reqs, reps []byte) {
		if len(reqs)+len(reps) > 16<<10 {
			t.Skip("large inputs add nothing")
		}
		checkSplits(t, reqs, l7.DirReply, reps)
	})
}

// checkSplits compares the answers to data fed whole and fed in chunks of
// a few sizes, to parsers that first saw the requests prime.
func checkSplits(t *testing.T, prime []byte, dir l7.Dir, data []byte) {
	t.Helper()
	fresh := func() *Parser { return NewParserPrimedQuiet(prime) }
	whole := normalize(dir, stream(t, fresh(), dir, data, []int{len(data)}))
	for _, step := range []int{1, 3, 17, 256} {
		if step == 1 && len(data) > 1024 {
			continue
		}
		var ends []int
		for e := step; ; e += step {
			e = min(e, len(data))
			ends = append(ends, e)
			if e == len(data) {
				break
			}
		}
		if got := normalize(dir, stream(t, fresh(), dir, data, ends)); !slices.Equal(got, whole) {
			t.Fatalf("%x in steps of %d:\n got %v\nwant %v", data, step, got, whole)
		}
	}
}

// checkDenials denies every request frame of data, and checks that the
// reply is the one a parser that writes every deny summary while parsing
// (eager) gets: Produce's and Fetch's records written by Deny from the
// request (lazy.go) are the parser's.
func checkDenials(t *testing.T, data []byte) {
	t.Helper()
	p, eager := NewParser(), NewParser()
	eager.eager = true
	var f, ef l7.Frame
	for rest := data; len(rest) > 0; {
		op, n, err := p.Parse(l7.DirRequest, rest, &f)
		eop, en, eerr := eager.Parse(l7.DirRequest, rest, &ef)
		if op != eop || n != en || err != eerr {
			t.Fatalf("lazy parser %v %d %v, eager %v %d %v", op, n, err, eop, en, eerr)
		}
		if err != nil || op == l7.OpMore {
			return
		}
		if op == l7.OpFrame {
			out := Deny(nil, &f, "fuzz\r\n\x00")
			if want := Deny([]byte("x"), &ef, "fuzz\r\n\x00"); !bytes.Equal(out, want[1:]) {
				t.Fatalf("deny reply to %x:\n lazy %x\neager %x", rest[:n], out, want[1:])
			}
			eager.Denied(&ef)
			key, v := APIKeyVersion(&f)
			if len(out) > 0 {
				_, body := replyBody(t, out, key, v)
				resp := kmsg.ResponseForKey(key)
				resp.SetVersion(v)
				if err := resp.ReadFrom(body); err != nil {
					t.Fatalf("deny reply to %x: kmsg: %v", rest[:n], err)
				}
				if again := resp.AppendTo(nil); !bytes.Equal(again, body) {
					t.Fatalf("deny reply to %x:\n ours %x\nkmsg's %x", rest[:n], body, again)
				}
			} else if replySchemaFor(key, v) != nil && !f.NoReply {
				t.Fatalf("no deny reply to %x", rest[:n])
			}
			p.Denied(&f)
		}
		rest = rest[n:]
	}
}

// FuzzDeny checks that Deny never panics and stays bounded on frames that
// did not come from the parser, whatever their Verb's capacity holds.
func FuzzDeny(f *testing.F) {
	var fr l7.Frame
	NewParser().Parse(l7.DirRequest, produce(9, 1, -1, "orders", "audit"), &fr)
	f.Add([]byte("Produce"), fr.Verb[len(fr.Verb):cap(fr.Verb)], "reason")
	f.Add([]byte("Fetch"), []byte{sumMagic0, sumMagic1, sumMagic2, sumMagic3, 0, 0, 0, 17, 0, 1, 0, 11, 0, 0, 0, 1, 0}, "")
	f.Fuzz(func(t *testing.T, verb, tail []byte, reason string) {
		if len(tail) > 4<<10 {
			t.Skip()
		}
		buf := append(slices.Clip(verb), tail...)
		out := Deny(nil, &l7.Frame{Verb: buf[:len(verb)]}, reason)
		if len(out) > 64+16*len(tail) {
			t.Fatalf("deny reply of %d bytes from a %d-byte summary", len(out), len(tail))
		}
	})
}
