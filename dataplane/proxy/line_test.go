package proxy

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/protocols/all"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// The line protocol is a small protocol of the tests, made to exercise the
// proxy's generic mechanics (reply counting, bodies, pass, close on deny,
// server-first sniffing) that the real protocols rely on. Messages are
// lines of printable ASCII ended by "\n", tokens separated by one space.
//
// Requests: "VERB [resource ...] [@aux] [+len]". Resources are added with
// Frame.AddResource, "@x" is the Aux, "+len" announces a body of len raw
// bytes after the line, which the parser skips (OpSkip, in pieces as they
// come). Verbs with a meaning:
//   - QUIET: the server does not answer (NoReply); its deny reply is empty.
//   - PIPE, PIPEDEL: NoReply, but the server answers PIPE with a PARTIAL
//     line at once (as PostgreSQL answers a pipeline's Parse and Execute
//     with Partial messages, and its Sync with the complete reply);
//     PIPEDEL's deny reply is not empty, and when denied (DenyObserver)
//     the lines that follow are skipped up to the next END, as for TXN.
//   - SUB: the server speaks unasked from then on (Unordered).
//   - STARTTLS: every later call, in either direction, answers OpPass.
//   - CTL: a Control frame (forwarded unjudged, answered).
//   - TXN: when denied (DenyObserver), the lines that follow are skipped,
//     and so dropped with it, up to the next END line, as PostgreSQL
//     discards the extended protocol's messages up to Sync.
//
// Replies: "PARTIAL ..." lines are Partial frames, "HELLO ..." (the
// server-first greeting) is skipped, "PUSH ..." is Unordered and Partial,
// every other line completes the answer to one request ("ERR" and "DENIED"
// lines with Err).
//
// Deny reply: "DENIED <verb> <reason>\n".

// LineOptions configures LineProtocol.
type LineOptions struct {
	// Name of the protocol: one that enforce.Compile accepts.
	Name string
	// CloseOnDeny, ServerFirst and MaxMessage are the protocol's traits.
	CloseOnDeny, ServerFirst bool
	MaxMessage               int
	// Denied, when set, counts the parser's DenyObserver calls.
	Denied *atomic.Int64
}

// Limits of the line protocol.
const (
	lineMax = 1024    // longest line, "\n" included
	bodyMax = 1 << 20 // longest body
)

// LineProtocol is the tests' line protocol.
func LineProtocol(o LineOptions) l7.Protocol {
	return l7.Protocol{
		Name:        o.Name,
		New:         func() l7.Parser { return &lineParser{denied: o.Denied} },
		Sniff:       func(first []byte) bool { return lineSniff(first, o.ServerFirst) },
		Deny:        lineDeny,
		CloseOnDeny: o.CloseOnDeny,
		ServerFirst: o.ServerFirst,
		MaxMessage:  o.MaxMessage,
	}
}

// lineSniff: a client-first connection starts with an upper-case verb and a
// space or a newline; a server-first one with "HELLO ".
func lineSniff(first []byte, serverFirst bool) bool {
	if serverFirst {
		return bytes.HasPrefix(first, []byte("HELLO "))
	}
	i := 0
	for i < len(first) && first[i] >= 'A' && first[i] <= 'Z' {
		i++
	}
	return i > 0 && i < len(first) && (first[i] == ' ' || first[i] == '\n')
}

func lineDeny(dst []byte, f *l7.Frame, reason string) []byte {
	if f.NoReply && string(f.Verb) == "QUIET" {
		return dst
	}
	dst = append(dst, "DENIED "...)
	dst = append(dst, f.Verb...)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	return append(dst, '\n')
}

type lineParser struct {
	passed     bool // after STARTTLS
	body       int  // request body bytes still to skip
	discarding bool // after a denied TXN: skip up to END
	denied     *atomic.Int64
}

var (
	_ l7.Parser       = (*lineParser)(nil)
	_ l7.DenyObserver = (*lineParser)(nil)
)

func (p *lineParser) Denied(f *l7.Frame) {
	if p.denied != nil {
		p.denied.Add(1)
	}
	if string(f.Verb) == "TXN" || string(f.Verb) == "PIPEDEL" {
		p.discarding = true
	}
}

func (p *lineParser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if p.passed {
		return l7.OpPass, 0, nil
	}
	if dir == l7.DirRequest && p.body > 0 {
		if len(data) == 0 {
			return l7.OpMore, 1, nil
		}
		n := min(p.body, len(data))
		p.body -= n
		return l7.OpSkip, n, nil
	}
	i := bytes.IndexByte(data[:min(len(data), lineMax)], '\n')
	if i < 0 {
		if len(data) >= lineMax {
			return l7.OpMore, 0, l7.ErrTooLong
		}
		return l7.OpMore, 1, nil
	}
	line := data[:i]
	for _, c := range line {
		if c < ' ' || c > '~' {
			return l7.OpMore, 0, l7.ErrMalformed
		}
	}
	verb, rest, _ := bytes.Cut(line, []byte(" "))
	if len(verb) == 0 || len(verb) > l7.MaxVerb {
		return l7.OpMore, 0, l7.ErrMalformed
	}
	if dir == l7.DirReply {
		switch string(verb) {
		case "HELLO":
			return l7.OpSkip, i + 1, nil
		}
		f.Reset(l7.DirReply)
		switch string(verb) {
		case "PARTIAL":
			f.Partial = true
		case "PUSH":
			f.Partial, f.Unordered = true, true
		case "ERR", "DENIED":
			f.Err = true
		}
		return l7.OpFrame, i + 1, nil
	}
	if p.discarding {
		if string(verb) != "END" {
			return l7.OpSkip, i + 1, nil
		}
		p.discarding = false
	}
	f.Reset(l7.DirRequest)
	f.Verb = verb
	for len(rest) > 0 {
		var tok []byte
		tok, rest, _ = bytes.Cut(rest, []byte(" "))
		switch {
		case len(tok) == 0:
			return l7.OpMore, 0, l7.ErrMalformed
		case tok[0] == '@':
			f.Aux = tok[1:]
		case tok[0] == '+':
			n := 0
			for _, c := range tok[1:] {
				if c < '0' || c > '9' || n > bodyMax {
					return l7.OpMore, 0, l7.ErrMalformed
				}
				n = 10*n + int(c-'0')
			}
			if n > bodyMax {
				return l7.OpMore, 0, l7.ErrTooLong
			}
			p.body = n
		default:
			f.AddResource(tok)
		}
		f.Args++
	}
	switch string(verb) {
	case "QUIET", "PIPE", "PIPEDEL":
		f.NoReply = true
	case "SUB":
		f.Unordered = true
	case "STARTTLS":
		p.passed = true
	case "CTL":
		f.Control = true
	}
	return l7.OpFrame, i + 1, nil
}

// LineName is the protocol name the line protocol borrows: one that
// enforce.Compile accepts with generic (L7Rule) matchers, i.e. a name of
// protocols/all other than redis. The proxy itself only cares about the
// l7.Protocol it is given.
func LineName(t testing.TB) string {
	t.Helper()
	for _, p := range all.Protocols() {
		if p.Name != redisName {
			return p.Name
		}
	}
	t.Fatal("protocols/all lists no protocol judged by L7Rule matchers")
	return ""
}

// LineVerbs are the verbs the line-protocol policies allow; DEL, TXN and
// PIPEDEL are not.
var LineVerbs = []string{"GET", "PUT", "QUIET", "PIPE", "MULTI", "SLOW", "SUB", "STARTTLS", "END", "ECHO"}

// LinePolicy is the ProxyPolicy of the line-protocol tests: the workload's
// port speaks name (declared, unless undeclared), and demo/cart may send
// LineVerbs on it.
func LinePolicy(name string, port uint16, mode bulkheadv1.Mode, undeclared bool) *bulkheadv1.ProxyPolicy {
	pp := &bulkheadv1.ProxyPolicy{
		Segment: "svc", Namespace: "demo", Mode: mode, Revision: "r1",
		Ingress: []*bulkheadv1.Rule{{
			Name:  "demo/svc/from-cart",
			Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Segment{Segment: "demo/cart"}}},
			Ports: []*bulkheadv1.Port{{Port: uint32(port), Protocol: name}},
			L7:    []*bulkheadv1.L7Rule{{Verbs: LineVerbs}},
		}},
	}
	if !undeclared {
		pp.Ports = []*bulkheadv1.Port{{Port: uint32(port), Protocol: name}}
	}
	return pp
}
