package http2

import (
	"bytes"

	"github.com/bulkhead-io/bulkhead/protocols/http1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// The connection's phase: decided by the client's first bytes.
const (
	modeUndecided = iota
	// modeH1: HTTP/1.1 (an h2c upgrade, or an HTTP/1.1 client on an
	// http2 port): an http1.Parser frames both directions until the
	// server switches protocols with 101 to a request with "Upgrade: h2c".
	modeH1
	// modeH2: HTTP/2 frames (prior knowledge from the start).
	modeH2
)

// h1Request parses a request-direction message in the HTTP/1.1 phase.
func (p *Parser) h1Request(data []byte, f *l7.Frame) (l7.Op, int, error) {
	op, n, err := p.h1.Parse(l7.DirRequest, data, f)
	if err != nil {
		return op, n, err
	}
	switch op {
	case l7.OpPass:
		if !p.h2c || !p.repH2 {
			return op, n, nil
		}
		// The server switched to h2c: the client's preface follows. The
		// upgrade request is stream 1, half-closed by the client.
		p.reqH2 = true
		p.lastStream = 1
		return p.Parse(l7.DirRequest, data, f)
	case l7.OpFrame:
		p.req.last.Waiting = p.h1Open > 0
		if !f.NoReply {
			p.h1Open++
		}
		// The request a 101 answers is the last one (no pipelining
		// while requests wait, see Stream.Waiting).
		p.h2c = isH2CUpgrade(data[:n])
		f.Args = 0
	}
	return op, n, nil
}

// h1Reply parses a reply-direction message in the HTTP/1.1 phase.
func (p *Parser) h1Reply(data []byte, f *l7.Frame) (l7.Op, int, error) {
	op, n, err := p.h1.Parse(l7.DirReply, data, f)
	if err != nil {
		return op, n, err
	}
	switch op {
	case l7.OpPass:
		if !p.h2c {
			return op, n, nil
		}
		p.repH2 = true
		return p.Parse(l7.DirReply, data, f)
	case l7.OpFrame:
		if p.h2c && is101(data[:n]) {
			// The server switched: from now on the http1 parser answers
			// OpPass in both directions, and the request side (which may
			// ask before this side's next call) must find the reply
			// side switched already, or it would take the OpPass for
			// "forward the rest unparsed".
			p.repH2 = true
		}
		if !f.Partial && p.h1Open > 0 {
			p.h1Open--
		}
	}
	return op, n, nil
}

// is101 reports whether a response head's status is 101.
func is101(head []byte) bool {
	return len(head) >= 12 && bytes.HasPrefix(head, []byte("HTTP/1.")) && head[8] == ' ' && string(head[9:12]) == "101"
}

// Denied tells the parser that the proxy answered request frame f itself
// (l7.DenyObserver): in the HTTP/1.1 phase the http1 parser forgets it;
// HTTP/2 streams need nothing.
func (p *Parser) Denied(f *l7.Frame) {
	if p.mode != modeH1 || p.reqH2 || StreamID(f) != 0 {
		return
	}
	p.h1.Denied(f)
	if p.h1Open > 0 {
		p.h1Open--
	}
}

// isH2CUpgrade reports whether an HTTP/1.1 request head asks to upgrade
// to h2c: an Upgrade header whose tokens include "h2c".
func isH2CUpgrade(head []byte) bool {
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			return false
		}
		line := bytes.TrimRight(head[:i], "\r")
		head = head[i+1:]
		if len(line) == 0 {
			return false
		}
		c := bytes.IndexByte(line, ':')
		if c != len("upgrade") || !bytes.EqualFold(line[:c], []byte("upgrade")) {
			continue
		}
		for _, tok := range bytes.Split(line[c+1:], []byte(",")) {
			if bytes.EqualFold(bytes.TrimSpace(tok), []byte("h2c")) {
				return true
			}
		}
	}
	return false
}

// sniffUpgrade reports whether first is a whole HTTP/1.1 request head
// (http1.Sniff) asking for an h2c upgrade.
func sniffUpgrade(first []byte) bool {
	end := bytes.Index(first, []byte("\r\n\r\n"))
	return end > 0 && http1.Sniff(first) && isH2CUpgrade(first[:end+4])
}
