package dns

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// FuzzParseRequest checks, for any input read as a DNS-over-TCP request
// stream: no panic; every answer within bounds (checkAnswer); the same
// answers however the input is split (checkSplits); a deny reply to every
// frame that is a well-formed response to it (checkDeny).
func FuzzParseRequest(f *testing.F) { fuzzParse(f, l7.DirRequest, requestCases, ".req") }

// FuzzParseReply is FuzzParseRequest for the reply direction; after every
// reply frame Answers must report only sane values.
func FuzzParseReply(f *testing.F) { fuzzParse(f, l7.DirReply, replyCases, ".reply") }

func fuzzParse(f *testing.F, dir l7.Dir, cases []parseCase, ext string) {
	for _, c := range cases {
		f.Add(c.in)
	}
	for _, name := range l7test.Recordings(f, ext) {
		f.Add(l7test.ReadFile(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			t.Skip("large inputs add nothing")
		}
		whole := wholeStream(t, dir, data)
		checkSplits(t, dir, data, whole)
		checkFrames(t, dir, data)
	})
}

// checkSplits feeds data to one parser growing one byte at a time (in
// steps on large inputs), message after message, as the proxy does, and
// compares with whole, the answers to the whole input: before a message is
// complete every answer is OpMore with a count that does not overshoot the
// message's end (or, when the whole input ends in an error, possibly that
// same error early); when it is complete the answer is the same.
func checkSplits(t *testing.T, dir l7.Dir, data []byte, whole []result) {
	t.Helper()
	p := NewParser()
	step := 1 + len(data)/512
	c := 0
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

// checkFrames parses data frame by frame and checks what follows each
// frame: a deny reply to a request, Answers after a reply.
func checkFrames(t *testing.T, dir l7.Dir, data []byte) {
	t.Helper()
	p := NewParser()
	var f l7.Frame
	for rest := data; ; {
		op, n, err := p.Parse(dir, rest, &f)
		if err != nil || op != l7.OpFrame {
			return
		}
		if dir == l7.DirRequest {
			checkDeny(t, DenyDatagram(nil, &f, "fuzz"), &f, "fuzz")
		} else {
			checkAnswersSane(t, p)
		}
		rest = rest[n:]
	}
}

// checkAnswersSane calls Answers and checks what it reports.
func checkAnswersSane(t *testing.T, p *Parser) {
	t.Helper()
	n := 0
	p.Answers(func(name []byte, addr netip.Addr, ttl uint32) {
		n++
		if len(name) > 253 || bytes.ContainsAny(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") || bytes.HasSuffix(name, []byte(".")) {
			t.Fatalf("Answers name %q", name)
		}
		if !addr.IsValid() || addr.Zone() != "" {
			t.Fatalf("Answers address %v", addr)
		}
	})
	if n > MaxMessage/11 {
		t.Fatalf("Answers reported %d addresses", n)
	}
}

// FuzzParseDatagram checks the UDP entry point: no panic, sane frames, a
// fresh parser and a used one give the same answer (no state between
// datagrams), and the same message over TCP frames alike.
func FuzzParseDatagram(f *testing.F) {
	for _, c := range requestCases {
		if len(c.in) > 2 {
			f.Add(c.in[2:], false)
		}
	}
	for _, c := range replyCases {
		if len(c.in) > 2 {
			f.Add(c.in[2:], true)
		}
	}
	for _, name := range l7test.Recordings(f, ".req") {
		for _, d := range datagrams(f, l7test.ReadFile(f, name)) {
			f.Add(d, false)
		}
	}
	for _, name := range l7test.Recordings(f, ".reply") {
		for _, d := range datagrams(f, l7test.ReadFile(f, name)) {
			f.Add(d, true)
		}
	}
	used := NewParser()
	f.Fuzz(func(t *testing.T, msg []byte, reply bool) {
		dir := l7.DirRequest
		if reply {
			dir = l7.DirReply
		}
		got := parseDatagram(t, NewParser(), dir, msg)
		if again := parseDatagram(t, used, dir, msg); again != got {
			t.Fatalf("fresh parser %v, used parser %v", got, again)
		}
		if got.Err == nil {
			if reply {
				checkAnswersSane(t, used)
			} else {
				var fr l7.Frame
				if err := used.ParseDatagram(dir, msg, &fr); err != nil {
					t.Fatal(err)
				}
				checkDeny(t, DenyDatagram(nil, &fr, "fuzz"), &fr, "fuzz")
			}
		}
		if len(msg) > MaxMessage {
			return
		}
		overTCP := parse(t, NewParser(), dir, tcp(msg))
		if overTCP.Err == nil && overTCP.Op == l7.OpFrame {
			overTCP.N -= 2
			overTCP.Partial = false // a transfer's first message, over TCP
		}
		if reply && got.Err == nil && overTCP.Err != nil && transferQuestion(msg) {
			// Over TCP the records of a zone transfer's answer are
			// followed (its SOAs end it) and a malformed SOA is an error;
			// a transfer does not run over UDP (RFC 5936 §4.2), and a
			// datagram's records are passed on unread.
			return
		}
		if (overTCP.Err == nil) != (got.Err == nil) || (got.Err == nil && overTCP != got) {
			t.Fatalf("datagram %v, over TCP %v", got, overTCP)
		}
	})
}

// FuzzDeny checks that any name, packed query and reason give a bounded,
// well-formed REFUSED response (or nothing without a query), and that Deny
// is DenyDatagram with its length.
func FuzzDeny(f *testing.F) {
	f.Add([]byte("www.example.com"), int64(Query{ID: 1, RD: true, Type: 1, Class: 1, EDNS: true}.Args()), "l7_not_allowed", []byte("A"), []byte(nil))
	f.Add([]byte(""), int64(Query{ID: 2, Type: 2, Class: 1}.Args()), "", []byte(nil), []byte(nil))
	f.Add([]byte("a..b"), int64(Query{ID: 3, OpCode: 4, CD: true, Type: 6, Class: 3, EDNS: true, DO: true}.Args()), "a\r\nb", []byte("SOA"), []byte("CH"))
	f.Add([]byte("x"), int64(-1), "x", []byte("type65"), []byte("class3"))
	f.Fuzz(func(t *testing.T, res []byte, args int64, reason string, verb, aux []byte) {
		fr := &l7.Frame{Resource: res, Args: int(args)}
		out := DenyDatagram(nil, fr, reason)
		checkDeny(t, out, fr, reason)
		fr.Verb, fr.Aux = verb, aux
		out = DenyDatagram(nil, fr, reason)
		checkDeny(t, out, fr, reason)
		if got := Deny([]byte{9}, fr, reason); !bytes.Equal(got, append([]byte{9}, tcp(out)...)) {
			t.Fatalf("Deny %q, DenyDatagram %q", got, out)
		}
	})
}

// transferQuestion reports whether msg's one question asks for a zone
// transfer (AXFR or IXFR).
func transferQuestion(msg []byte) bool {
	var p dnsmessage.Parser
	if _, err := p.Start(msg); err != nil {
		return false
	}
	q, err := p.Question()
	return err == nil && (q.Type == dnsmessage.TypeAXFR || q.Type == typeIXFR)
}
