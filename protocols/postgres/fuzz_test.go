package postgres

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// fuzzLimits are small, so that the fuzzer reaches every limit and evicts
// statements and portals.
var fuzzLimits = Limits{MaxQuery: 256, MaxStatements: 2, MaxPortals: 2}

// FuzzParseRequest checks, for any input read as a request stream, from
// the startup phase and from the typed phase, with and without denials:
// no panic; every answer within bounds (checkAnswer); the same answers
// however the input is split (consecutive skips merged).
func FuzzParseRequest(f *testing.F) { fuzzParse(f, l7.DirRequest, requestCases, ".req") }

// FuzzParseReply is FuzzParseRequest for the reply direction.
func FuzzParseReply(f *testing.F) { fuzzParse(f, l7.DirReply, replyCases, ".reply") }

func fuzzParse(f *testing.F, dir l7.Dir, cases []parseCase, ext string) {
	for _, c := range cases {
		f.Add(cat(append(c.pre, c.in)...))
		f.Add(c.in)
	}
	for _, name := range l7test.Recordings(f, ext) {
		if data := l7test.ReadFile(f, name); len(data) <= 16<<10 {
			f.Add(data)
		}
	}
	pre := startupPG
	if dir == l7.DirReply {
		pre = msg('R', be32b(0))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			t.Skip("large inputs add nothing the small limits do not reach")
		}
		for _, lim := range []Limits{{}, fuzzLimits} {
			for _, typed := range []bool{false, true} {
				for _, deny := range []bool{false, true} {
					if deny && dir == l7.DirReply {
						continue
					}
					mk := func() *Parser {
						p := NewParserWithLimits(lim)
						if typed {
							wholeStream(t, p, dir, pre)
						}
						return p
					}
					checkSplits(t, dir, data, mk, deny)
				}
			}
		}
	})
}

// denyRule picks the request frames a fuzz run denies: judged frames
// whose verb has an odd length.
func denyRule(r result) bool {
	return r.Op == l7.OpFrame && !r.Control && len(r.Verb)%2 == 1
}

// streamDeny is stream with denials: after each frame that denyRule
// picks, the parser is told (Denied).
func streamDeny(t testing.TB, p *Parser, dir l7.Dir, data []byte, ends []int, deny bool) []result {
	t.Helper()
	var out []result
	consumed := 0
	for ci, end := range ends {
		last := ci == len(ends)-1
		for {
			r := parse(t, p, dir, data[consumed:end])
			if r.Err != nil || r.Op == l7.OpPass {
				return append(out, r)
			}
			if r.Op == l7.OpMore {
				if last {
					out = append(out, r)
				}
				break
			}
			if deny && denyRule(r) {
				p.Denied(nil)
			}
			out = append(out, r)
			consumed += r.N
		}
	}
	return out
}

// checkSplits compares the answers to the whole input with the answers
// when it arrives one byte at a time (in steps, for long inputs) and in
// two or three pieces.
func checkSplits(t *testing.T, dir l7.Dir, data []byte, mk func() *Parser, deny bool) {
	t.Helper()
	whole := events(streamDeny(t, mk(), dir, data, []int{len(data)}, deny))
	step := 1 + len(data)/256
	var ends []int
	for k := step; k < len(data); k += step {
		ends = append(ends, k)
	}
	splits := [][]int{
		append(ends, len(data)),
		{len(data) / 2, len(data)},
		{len(data) / 3, 2 * len(data) / 3, len(data)},
	}
	for _, s := range splits {
		got := events(streamDeny(t, mk(), dir, data, s, deny))
		if !slices.Equal(got, whole) {
			t.Fatalf("input %q split at %v:\n%s", data, s, l7test.Diff(got, whole))
		}
	}
}

// FuzzDeny checks that any verb, table and reason give one well-formed,
// bounded ErrorResponse (and ReadyForQuery where one is due).
func FuzzDeny(f *testing.F) {
	f.Add([]byte("DELETE"), []byte("accounts"), int('I'), false, "l7_not_allowed")
	f.Add([]byte("SSL"), []byte(""), 0, false, "")
	f.Add([]byte("CANCEL"), []byte(""), 0, true, "x")
	f.Add([]byte("SELECT\x00"), []byte("t\r\n"), int('T'), true, "a\x00b")
	f.Fuzz(func(t *testing.T, verb, table []byte, args int, noReply bool, reason string) {
		fr := &l7.Frame{Verb: verb, Resource: table, Args: args, NoReply: noReply}
		out := Deny(nil, fr, reason)
		if len(out) > 512 {
			t.Fatalf("%d bytes: %q", len(out), out)
		}
		if len(out) == 1 || bytes.Equal(out, tlsAccessDenied) {
			if args != 0 || (string(verb) != "SSL" && string(verb) != "GSSENC") {
				t.Fatalf("%q for verb %q, args %d", out, verb, args)
			}
			return
		}
		p := NewParser()
		p.rep.phase = repTyped
		rs := wholeStream(t, p, l7.DirReply, out)
		if last := rs[len(rs)-1]; last.Err != nil || last.Op != l7.OpMore || !rs[0].IsErr {
			t.Fatalf("%q parses as %v", out, rs)
		}
		if strings.Contains(string(out[5:rs[0].N-1]), "\r") || strings.Contains(string(out[5:rs[0].N-1]), "\n") {
			t.Fatalf("%q holds CR or LF", out)
		}
	})
}

func TestFuzzCorpusIsCommitted(t *testing.T) {
	for _, name := range []string{"FuzzParseRequest", "FuzzParseReply", "FuzzDeny"} {
		if files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", name, "*")); len(files) == 0 {
			t.Errorf("no committed corpus in testdata/fuzz/%s", name)
		}
	}
}
