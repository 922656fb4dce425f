package mysql

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// result is one answer of Parse, with the frame's fields as strings.
type result struct {
	Op       l7.Op
	N        int
	Err      error
	Verb     string
	Sub      string
	Res      []string
	Aux      string
	Overflow bool
	NoReply  bool
	Partial  bool
	FErr     bool
	Control  bool
}

func (r result) String() string {
	if r.Err != nil {
		return fmt.Sprintf("error(%v)", r.Err)
	}
	s := fmt.Sprintf("%v/%d", r.Op, r.N)
	if r.Op != l7.OpFrame {
		return s
	}
	s += fmt.Sprintf(" %q", r.Verb)
	if r.Sub != "" {
		s += fmt.Sprintf(" sub=%q", r.Sub)
	}
	if len(r.Res) > 0 {
		s += fmt.Sprintf(" res=%q", r.Res)
	}
	if r.Aux != "" {
		s += fmt.Sprintf(" aux=%q", r.Aux)
	}
	for _, fl := range []struct {
		on   bool
		name string
	}{{r.Overflow, "overflow"}, {r.NoReply, "noreply"}, {r.Partial, "partial"}, {r.FErr, "err"}, {r.Control, "control"}} {
		if fl.on {
			s += " " + fl.name
		}
	}
	return s
}

func parse(t testing.TB, p *Parser, dir l7.Dir, data []byte) result {
	t.Helper()
	var f l7.Frame
	op, n, err := p.Parse(dir, data, &f)
	// Fields may point into the parser's statement table: no view check.
	anyView := func(string, []byte, []byte) bool { return true }
	l7test.Check{Pass: true, ViewOK: anyView}.Answer(t, dir, data, op, n, err, &f)
	if err != nil {
		return result{Err: err}
	}
	r := result{Op: op, N: n}
	if op == l7.OpFrame {
		r.Verb, r.Sub, r.Aux = string(f.Verb), string(f.Sub), string(f.Aux)
		f.Resources(func(b []byte) bool { r.Res = append(r.Res, string(b)); return true })
		r.Overflow, r.NoReply, r.Partial, r.FErr, r.Control = f.Overflow, f.NoReply, f.Partial, f.Err, f.Control
	}
	return r
}

// pkt builds one packet.
func pkt(seq byte, payload ...any) []byte {
	var b []byte
	for _, x := range payload {
		switch v := x.(type) {
		case string:
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		case byte:
			b = append(b, v)
		case int:
			b = append(b, byte(v))
		default:
			panic(fmt.Sprintf("pkt: %T", x))
		}
	}
	return append([]byte{byte(len(b)), byte(len(b) >> 8), byte(len(b) >> 16), seq}, b...)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func le32b(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

const clientCaps = capProtocol41 | capSecureConnection | capPluginAuth | capPluginAuthLenenc |
	capConnectWithDB | capMultiStatements | capSessionTrack | capLocalFiles | capConnectAttrs

// handshake returns a HandshakeResponse41 with the given capabilities
// (MariaDB extended capabilities ext) and database.
func handshake(caps, ext uint32, db string) []byte {
	b := cat(le32b(caps), le32b(1<<24), []byte{33}, make([]byte, 19), le32b(ext))
	b = append(b, "root\x00"...)
	b = append(b, 20)
	b = append(b, make([]byte, 20)...)
	if caps&capConnectWithDB != 0 {
		b = append(b, db...)
		b = append(b, 0)
	}
	b = append(b, "mysql_native_password\x00"...)
	return pkt(1, b)
}

// greeting returns a MariaDB-like server greeting with caps and ext.
func greetingPkt(caps, ext uint32) []byte {
	b := []byte{10}
	b = append(b, "5.5.5-10.11.19-MariaDB\x00"...)
	b = append(b, le32b(7)...)
	b = append(b, "12345678"...)
	b = append(b, 0, byte(caps), byte(caps>>8), 33, 2, 0, byte(caps>>16), byte(caps>>24), 21)
	b = append(b, make([]byte, 6)...)
	b = append(b, le32b(ext)...)
	b = append(b, "123456789012\x00"...)
	b = append(b, "mysql_native_password\x00"...)
	return pkt(0, b)
}

func okPkt(seq byte, status uint16) []byte {
	return pkt(seq, 0, 0, 0, byte(status), byte(status>>8), 0, 0)
}

func eofPkt(seq byte, status uint16) []byte {
	return pkt(seq, 0xfe, 0, 0, byte(status), byte(status>>8))
}

func errPkt(seq byte, code uint16, msg string) []byte {
	return pkt(seq, 0xff, byte(code), byte(code>>8), "#42S02", msg)
}

// colDef is a column definition packet.
func colDef(seq byte, name string) []byte {
	return pkt(seq, 3, "def", 4, "shop", 5, "items", 5, "items", byte(len(name)), name, byte(len(name)), name,
		0x0c, 0x21, 0, 0xc0, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0)
}

// textRow is a text-protocol row.
func textRow(seq byte, values ...string) []byte {
	var b []byte
	for _, v := range values {
		b = append(b, byte(len(v)))
		b = append(b, v...)
	}
	return pkt(seq, b)
}

func query(sql string) []byte { return pkt(0, comQuery, sql) }

// session returns a parser that went through a greeting, a handshake
// response and a login OK with the given capabilities.
func session(t testing.TB, caps, ext uint32, db string) *Parser {
	t.Helper()
	p := NewParser()
	all := uint32(0xffffffff &^ (capMySQL | capCompress | capZstd | capSSL | capQueryAttributes | capOptionalMetadata))
	for _, s := range []struct {
		dir  l7.Dir
		data []byte
	}{
		{l7.DirReply, greetingPkt(all, 0xff)},
		{l7.DirRequest, handshake(caps, ext, db)},
		{l7.DirReply, okPkt(2, 2)},
	} {
		if r := parse(t, p, s.dir, s.data); r.Err != nil || r.Op != l7.OpSkip || r.N != len(s.data) {
			t.Fatalf("session setup: %v", r)
		}
	}
	return p
}

// ---- recordings ----

// recording is a pair of recorded byte streams of one connection.
type recording struct {
	name     string
	req, rep []byte
}

// clientPrefixes are the producers of the recorded requests; each reply
// file is named mariadbd-10.11-<scenario>.reply.
var clientPrefixes = []string{"mariadb-admin-10.11-", "mariadb-10.11-", "sysbench-1.0-"}

func recordings(t testing.TB) []recording {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "*.req"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no recordings in testdata: %v", err)
	}
	sort.Strings(names)
	var out []recording
	for _, name := range names {
		base := strings.TrimSuffix(filepath.Base(name), ".req")
		scenario := ""
		for _, pre := range clientPrefixes {
			if strings.HasPrefix(base, pre) {
				scenario = strings.TrimPrefix(base, pre)
				break
			}
		}
		if scenario == "" {
			t.Fatalf("recording %s: unknown client prefix", name)
		}
		out = append(out, recording{
			name: scenario,
			req:  l7test.ReadFile(t, name),
			rep:  l7test.ReadFile(t, filepath.Join("testdata", "mariadbd-10.11-"+scenario+".reply")),
		})
	}
	return out
}

// replay parses a recorded connection as the proxy would see it: the
// greeting first, then one request message whenever the reply side waits
// for the client (during authentication, and when no command is
// unanswered), so that each reply is parsed after the request that caused
// it. step 0 hands the parser everything left of a stream; step k > 0
// grows the input k bytes at a time from 1, so that every message arrives
// cut at each of its bytes. It returns every answer but OpMore, in each
// direction.
func replay(t testing.TB, rec recording, step int) (reqs, reps []result) {
	t.Helper()
	p := NewParser()
	var offReq, offRep int
	next := func(dir l7.Dir, data []byte, off *int, out *[]result) bool {
		rest := data[*off:]
		if len(rest) == 0 {
			return false
		}
		size := len(rest)
		if step > 0 {
			size = min(step, len(rest))
		}
		for {
			r := parse(t, p, dir, rest[:size])
			switch {
			case r.Err != nil:
				t.Fatalf("%s: %v at offset %d: %v", rec.name, dir, *off, r.Err)
			case r.Op == l7.OpMore:
				if size == len(rest) {
					t.Fatalf("%s: %v stream ends inside a message at %d (more %d)", rec.name, dir, *off, r.N)
				}
				if step > 0 {
					size = min(size+step, len(rest))
				} else {
					size = len(rest)
				}
				continue
			case r.Op == l7.OpPass:
				*out = append(*out, r)
				*off = len(data)
				return true
			}
			*out = append(*out, r)
			*off += r.N
			return true
		}
	}
	lastReq := false
	waiting := func() bool {
		switch p.rs.stage {
		case sGreeting:
			return false
		case sAuth:
			return !lastReq // the client answers each authentication packet
		case sClosed:
			return true
		}
		return p.pN == 0 || p.infile
	}
	for offReq < len(rec.req) || offRep < len(rec.rep) {
		if (waiting() || offRep == len(rec.rep)) && next(l7.DirRequest, rec.req, &offReq, &reqs) {
			lastReq = true
			if p.pass {
				offRep = len(rec.rep)
			}
			continue
		}
		lastReq = false
		if !next(l7.DirReply, rec.rep, &offRep, &reps) {
			if offReq < len(rec.req) {
				next(l7.DirRequest, rec.req, &offReq, &reqs)
				continue
			}
			break
		}
		if p.pass {
			offReq = len(rec.req)
		}
	}
	return reqs, reps
}

// frames keeps the OpFrame answers.
func frames(rs []result) []result {
	var out []result
	for _, r := range rs {
		if r.Op == l7.OpFrame {
			out = append(out, r)
		}
	}
	return out
}
