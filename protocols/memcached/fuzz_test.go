package memcached

import (
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// fuzzLimits are small, so that the fuzzer reaches every limit.
var fuzzLimits = Limits{MaxLine: 64, MaxItem: 64}

// FuzzParseRequest checks, for any input read as a request stream: no
// panic; every answer within bounds (checkAnswer); the same answers however
// the input is split, with no OpMore overshooting its message
// (checkSplits).
func FuzzParseRequest(f *testing.F) { fuzzParse(f, l7.DirRequest, requestCases, ".req") }

// FuzzParseReply is FuzzParseRequest for the reply direction.
func FuzzParseReply(f *testing.F) { fuzzParse(f, l7.DirReply, replyCases, ".reply") }

func fuzzParse(f *testing.F, dir l7.Dir, cases []parseCase, ext string) {
	for _, c := range cases {
		f.Add([]byte(c.in))
	}
	for _, c := range streamCases {
		if c.dir == dir {
			f.Add([]byte(c.in))
		}
	}
	for _, name := range l7test.Recordings(f, ext) {
		f.Add(l7test.ReadFile(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4<<10 {
			t.Skip("large inputs add nothing the small limits do not reach")
		}
		for _, lim := range []Limits{{}, fuzzLimits} {
			checkSplits(t, dir, data, lim, wholeStream(t, dir, data, lim))
		}
	})
}

// FuzzDeny checks that any frame and reason give the reply memcached's
// client expects: nothing for a text noreply command, one bounded
// SERVER_ERROR line, or a binary response with the request's opcode and
// opaque that the reply parser frames as one answer (checkDenyReply).
func FuzzDeny(f *testing.F) {
	f.Add([]byte("get"), false, byte(0), uint32(0), false, "no_rule")
	f.Add([]byte("set"), false, byte(0), uint32(0), true, "l7_not_allowed")
	f.Add([]byte("mg"), false, byte(0), uint32(0), true, "a\r\nb")
	f.Add([]byte("getkq"), true, byte(opGetKQ), uint32(7), true, "x")
	f.Add([]byte(""), true, byte(0xff), uint32(0xffffffff), false, "\x00\xff")
	f.Fuzz(func(t *testing.T, verb []byte, bin bool, op byte, opaque uint32, noReply bool, reason string) {
		fr := &l7.Frame{Verb: verb, NoReply: noReply, Args: len(verb)}
		if bin {
			fr.Verb = opcodes[op].name
			fr.NoReply = opcodes[op].quiet
			fr.Args = argsBinary | int(op)<<32 | int(opaque)
		}
		out := Deny(nil, fr, reason)
		if len(out) > maxDenyReply {
			t.Fatalf("%q is longer than %d", out, maxDenyReply)
		}
		checkDenyReply(t, fr, out)
	})
}
