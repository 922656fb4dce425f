package dns

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// replyOutcome is what a parser makes of a response datagram: the error,
// the frame's fields and what Answers reports.
type replyOutcome struct {
	Err                          string
	FrameErr, Partial, Unordered bool
	Args                         int
	Answers                      []string
}

func parseReplyWith(msg []byte, slow bool) replyOutcome {
	p := NewParser()
	p.slowReplies = slow
	var f l7.Frame
	var o replyOutcome
	if err := p.ParseDatagram(l7.DirReply, bytes.Clone(msg), &f); err != nil {
		o.Err = err.Error()
		return o
	}
	o.FrameErr, o.Partial, o.Unordered, o.Args = f.Err, f.Partial, f.Unordered, f.Args
	p.Answers(func(name []byte, addr netip.Addr, ttl uint32) {
		o.Answers = append(o.Answers, fmt.Sprintf("%s %s %d", name, addr, ttl))
	})
	return o
}

func checkFastReply(t *testing.T, msg []byte) {
	t.Helper()
	fast, slow := parseReplyWith(msg, false), parseReplyWith(msg, true)
	if d := cmp.Diff(slow, fast); d != "" {
		t.Fatalf("%x: fastRecords and slowRecords differ (-slow +fast):\n%s", msg, d)
	}
}

// fastReplyCases are responses at the edges of fastRecords: compression
// pointers, CNAME chains, authorities, OPT records (one, two, not owned
// by the root), long names, and each cut short at every byte.
func fastReplyCases(t testing.TB) [][]byte {
	long63 := strings.Repeat("a", 63)
	longest := long63 + "." + long63 + "." + long63 + "." + strings.Repeat("b", 60) + "."
	optRR := func(name string) dnsmessage.Resource {
		var r dnsmessage.Resource
		r.Header.Name = dnsmessage.MustNewName(name)
		r.Header.Type = dnsmessage.TypeOPT
		r.Header.Class = 1232
		r.Header.TTL = 0x01008000
		r.Body = &dnsmessage.OPTResource{}
		return r
	}
	withAdditionals := func(rs ...dnsmessage.Resource) opt {
		return func(m *dnsmessage.Message) { m.Additionals = append(m.Additionals, rs...) }
	}
	whole := [][]byte{
		response(1, "a.test.", tA, withAnswers(rrA("a.test.", 60, "198.18.0.1"), rrA("a.test.", 30, "2001:db8::1"))),
		response(2, "www.test.", tA, withAnswers(rrCNAME("www.test.", 300, "edge.cdn.test."), rrCNAME("edge.cdn.test.", 20, "x.cdn.test."),
			rrA("x.cdn.test.", 60, "198.18.0.2"), rrA("other.test.", 60, "198.18.0.3"))),
		response(3, "a.test.", tA, withAnswers(rrA("a.test.", 60, "198.18.0.1")), withAuthorities(rrTXT("test.", "x")), withAdditionals(optRR("."))),
		response(4, "a.test.", tA, withAdditionals(optRR("."), optRR("."))),
		response(5, "a.test.", tA, withAdditionals(optRR("a.test."))),
		response(6, longest, tA, withAnswers(rrA(longest, 60, "198.18.0.4"))),
		response(7, "A.Test.", tA, withRCode(dnsmessage.RCodeNameError), withAuthorities(rrTXT("test.", "soa-ish"))),
		response(8, "a.test.", tA, withAnswers(rrTXT("a.test.", "t"), rrCNAME("a.test.", 5, "a.test."))),
	}
	if t != nil {
		for _, name := range l7test.Recordings(t, ".reply") {
			rec := l7test.ReadFile(t, name)
			for len(rec) >= 2 && len(rec) >= 2+int(be16(rec)) {
				whole = append(whole, rec[2:2+int(be16(rec))])
				rec = rec[2+int(be16(rec)):]
			}
		}
	}
	var cs [][]byte
	for _, m := range whole {
		for cut := headerLen; cut <= len(m); cut++ {
			cs = append(cs, m[:cut])
		}
		// The first record's owner: a pointer aimed at itself (a loop
		// dnsmessage cuts after 10 hops), a pointer chain of 10 and of
		// 11 hops, a reserved label type, and a dot inside a label.
		q, _, ok := unpackName(m, headerLen)
		if at := q + 4; ok && be16(m[6:])+be16(m[8:])+be16(m[10:]) > 0 && at+2 <= len(m) {
			for _, owner := range [][]byte{{0xc0, byte(at)}, {0x40, 0}, {1, '.', 0}} {
				bad := cat(m[:at:at], owner, m[at+ownerLen(m, at):])
				cs = append(cs, bad)
			}
			for _, hops := range []int{10, 11} {
				// Pointers at the end of the message, each to the next,
				// the last to the question's name.
				chain := bytes.Clone(m)
				start := len(chain)
				for h := 1; h < hops; h++ {
					chain = append(chain, 0xc0|byte((start+2*h)>>8), byte(start+2*h))
				}
				chain = append(chain, 0xc0, headerLen)
				copy(chain[at:], []byte{0xc0 | byte(start>>8), byte(start)}) // the owner: a pointer, same size as most
				cs = append(cs, chain)
			}
		}
	}
	return cs
}

// ownerLen is the length on the wire of the name at off (skipName).
func ownerLen(m []byte, off int) int {
	next, ok := skipName(m, off)
	if !ok {
		return len(m) - off
	}
	return next - off
}

// TestFastReply checks fastRecords against slowRecords (dnsmessage) on
// responses and their prefixes and corruptions.
func TestFastReply(t *testing.T) {
	for _, m := range fastReplyCases(t) {
		checkFastReply(t, m)
	}
}

// FuzzFastReply is TestFastReply on any datagram.
func FuzzFastReply(f *testing.F) {
	for _, m := range fastReplyCases(f) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, msg []byte) { checkFastReply(t, msg) })
}

// TestNameInto checks nameInto against dnsmessage's Question on the
// questions of the responses of TestFastReply.
func TestNameInto(t *testing.T) {
	for _, m := range fastReplyCases(t) {
		var p dnsmessage.Parser
		if _, err := p.Start(m); err != nil || be16(m[4:]) == 0 {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		if _, _, ok := unpackName(m, headerLen); !ok {
			t.Fatalf("%x: unpackName refused the question's name", m)
		}
		var n dnsmessage.Name
		if !nameInto(&n, m, headerLen) || n.String() != q.Name.String() {
			t.Fatalf("%x: nameInto %q, Question %q", m, n.String(), q.Name.String())
		}
	}
}
