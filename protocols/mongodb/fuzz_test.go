package mongodb

import (
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// fuzzLimits are small, so that the fuzzer reaches every limit and the
// streamed-reply path.
var fuzzLimits = Limits{MaxMessage: 512, MaxFrame: 128}

// FuzzParseRequest checks, for any input read as a request stream: no
// panic; every answer within bounds (parse); the same answers however the
// input is split, no OpMore overshooting its frame (checkSplits).
func FuzzParseRequest(f *testing.F) { fuzzParse(f, l7.DirRequest, ".req") }

// FuzzParseReply is FuzzParseRequest for the reply direction.
func FuzzParseReply(f *testing.F) { fuzzParse(f, l7.DirReply, ".reply") }

func fuzzParse(f *testing.F, dir l7.Dir, ext string) {
	for _, c := range cases {
		if c.dir == dir {
			f.Add([]byte(c.in))
		}
	}
	for _, name := range l7test.Recordings(f, ext) {
		f.Add(l7test.ReadFile(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			t.Skip("large inputs add nothing the small limits do not reach")
		}
		for _, lim := range []Limits{{}, fuzzLimits} {
			checkSplits(t, dir, data, lim, wholeStream(t, dir, data, lim))
		}
	})
}

// FuzzDeny checks that any command name, request id and reason give one
// bounded reply that the parser frames as an error answering the request
// and that the driver's bson package reads as code 13.
func FuzzDeny(f *testing.F) {
	f.Add([]byte("drop"), int64(26), false, "no rule allows it")
	f.Add([]byte("isMaster"), int64(3|ArgsOpQuery), false, "protect")
	f.Add([]byte("dr\x00op\r\n"), int64(-1), true, "a\r\nb")
	f.Fuzz(func(t *testing.T, verb []byte, args int64, noReply bool, reason string) {
		fr := &l7.Frame{Verb: verb, Args: int(args) & (1<<33 - 1), NoReply: noReply}
		out := Deny(nil, fr, reason)
		if noReply {
			if len(out) != 0 {
				t.Fatalf("reply to a moreToCome request: %q", out)
			}
			return
		}
		if len(out) > maxDenyReply {
			t.Fatalf("%d bytes", len(out))
		}
		checkDenyReply(t, out, fr)
	})
}
