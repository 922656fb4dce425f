package mysql

import (
	"errors"
	"fmt"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// FuzzConnection parses a client stream and a server stream as one
// connection, with the causal order the proxy sees (see replay), whole and
// growing the input one and seven bytes at a time. It checks: no panic;
// every answer within bounds (parse); the same frames and the same error
// however the input is cut. Seeded with the recorded connections.
func FuzzConnection(f *testing.F) {
	for _, rec := range recordings(f) {
		if len(rec.req)+len(rec.rep) < 8<<10 {
			f.Add(rec.req, rec.rep)
		}
	}
	f.Fuzz(func(t *testing.T, req, rep []byte) {
		if len(req)+len(rep) > 8<<10 {
			t.Skip("large inputs add nothing")
		}
		whole := fuzzReplay(t, req, rep, 0)
		for _, step := range []int{1, 7} {
			if got := fuzzReplay(t, req, rep, step); got != whole {
				t.Fatalf("step %d:\n%s\nwhole:\n%s", step, got, whole)
			}
		}
	})
}

// FuzzRequest parses a client stream in an established session (as a
// pipeline, without replies), whole and one byte at a time.
func FuzzRequest(f *testing.F) {
	for _, rec := range recordings(f) {
		f.Add(rec.req[min(len(rec.req), headerLen+int(rec.req[0])):])
	}
	f.Add(cat(query("SELECT 1; DROP TABLE t"), pkt(0, comStmtPrepare, "SELECT * FROM t"),
		pkt(0, comStmtExecute, le32b(lastStatement), 0, le32b(1)), pkt(0, comInitDB, "db")))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			t.Skip("large inputs add nothing")
		}
		whole := fuzzStream(t, data, 0)
		if got := fuzzStream(t, data, 1); got != whole {
			t.Fatalf("one byte at a time:\n%s\nwhole:\n%s", got, whole)
		}
	})
}

// FuzzDeny checks that Deny always builds one bounded ERR packet.
func FuzzDeny(f *testing.F) {
	f.Add("SELECT", "shop.items", "no rule allows it", false)
	f.Add("USE", "secret", "", false)
	f.Add("STMT_CLOSE", "", "", true)
	f.Fuzz(func(t *testing.T, verb, res, reason string, noReply bool) {
		fr := &l7.Frame{Verb: []byte(verb), NoReply: noReply}
		if res != "" {
			fr.Resource = []byte(res)
		}
		out := Deny(nil, fr, reason)
		if noReply && verb != "SSL" && verb != "COMPRESS" {
			if len(out) != 0 {
				t.Fatalf("reply to a NoReply frame: %q", out)
			}
			return
		}
		if len(out) > maxDenyPacket {
			t.Fatalf("%d bytes", len(out))
		}
		if l, _ := header(out); l != len(out)-headerLen || out[headerLen] != markERR {
			t.Fatalf("not one ERR packet: %q", out)
		}
		for _, c := range out[headerLen+3:] {
			if c < ' ' || c > '~' {
				t.Fatalf("unprintable byte in %q", out)
			}
		}
	})
}

// fuzzStream parses data as requests on an established session.
func fuzzStream(t *testing.T, data []byte, step int) string {
	p := session(t, mariaCaps, extCacheMetadata, "db")
	var out string
	off, size := 0, 0
	for off < len(data) {
		if step == 0 {
			size = len(data) - off
		} else if size == 0 {
			size = min(step, len(data)-off)
		}
		r := parse(t, p, l7.DirRequest, data[off:off+size])
		switch {
		case r.Err != nil:
			return out + errName(r.Err)
		case r.Op == l7.OpMore:
			if off+size == len(data) {
				return out + "more"
			}
			size = min(size+max(step, 1), len(data)-off)
			continue
		case r.Op == l7.OpFrame:
			out += r.String() + "\n"
		}
		off += r.N
		size = 0
	}
	return out
}

// fuzzReplay is replay for any input: it stops a direction at an
// incomplete message and both at an error, and returns the frames of both
// directions in the order they were parsed, then how it ended.
func fuzzReplay(t *testing.T, req, rep []byte, step int) string {
	p := NewParser()
	var out string
	type side struct {
		dir   l7.Dir
		data  []byte
		off   int
		stuck bool
	}
	sides := [2]*side{{dir: l7.DirRequest, data: req}, {dir: l7.DirReply, data: rep}}
	next := func(s *side) error {
		size := len(s.data) - s.off
		if step > 0 {
			size = min(step, size)
		}
		for {
			r := parse(t, p, s.dir, s.data[s.off:s.off+size])
			switch {
			case r.Err != nil:
				return r.Err
			case r.Op == l7.OpMore:
				if s.off+size == len(s.data) {
					s.stuck = true
					return nil
				}
				size = min(size+max(step, 1), len(s.data)-s.off)
				continue
			case r.Op == l7.OpPass:
				out += fmt.Sprintf("%v pass\n", s.dir)
				sides[0].stuck, sides[1].stuck = true, true
				return nil
			case r.Op == l7.OpFrame:
				out += fmt.Sprintf("%v %v\n", s.dir, r)
			}
			s.off += r.N
			return nil
		}
	}
	lastReq := false
	for {
		canReq := !sides[0].stuck && sides[0].off < len(req)
		canRep := !sides[1].stuck && sides[1].off < len(rep)
		if !canReq && !canRep {
			return out + "end"
		}
		wantReq := false
		switch p.rs.stage {
		case sGreeting:
		case sAuth:
			wantReq = !lastReq
		case sClosed:
			wantReq = true
		default:
			wantReq = p.pN == 0 || p.infile
		}
		s := sides[1]
		if (wantReq && canReq) || !canRep {
			s = sides[0]
		}
		lastReq = s.dir == l7.DirRequest
		if err := next(s); err != nil {
			return out + fmt.Sprintf("%v %s", s.dir, errName(err))
		}
	}
}

func errName(err error) string {
	switch {
	case errors.Is(err, l7.ErrTooLong):
		return "too long: " + err.Error()
	case errors.Is(err, l7.ErrMalformed):
		return "malformed: " + err.Error()
	}
	return "unexpected: " + err.Error()
}
