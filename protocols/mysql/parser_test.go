package mysql

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/google/go-cmp/cmp"
)

// step feeds data in one direction and lists the answers Parse gives
// until data is consumed (OpMore, OpPass and errors end a step).
type step struct {
	dir  l7.Dir
	data []byte
	want []string
}

func req(data []byte, want ...string) step { return step{l7.DirRequest, data, want} }
func rep(data []byte, want ...string) step { return step{l7.DirReply, data, want} }

func runSteps(t *testing.T, p *Parser, steps []step) {
	t.Helper()
	for i, s := range steps {
		var got []string
		skipped := 0 // consecutive skips are one answer: how they are batched is the parser's business
		data := s.data
		for len(data) > 0 {
			r := parse(t, p, s.dir, data)
			if r.Op == l7.OpSkip && r.Err == nil {
				skipped += r.N
				data = data[r.N:]
				continue
			}
			if skipped > 0 {
				got = append(got, fmt.Sprintf("skip/%d", skipped))
				skipped = 0
			}
			got = append(got, r.String())
			if r.Err != nil || r.Op == l7.OpMore || r.Op == l7.OpPass {
				break
			}
			data = data[r.N:]
		}
		if skipped > 0 {
			got = append(got, fmt.Sprintf("skip/%d", skipped))
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("step %d (%v): answers (-want +got):\n%s\ngot: %#v", i, s.dir, diff, got)
		}
	}
}

const mariaCaps = clientCaps | capMultiStatements

func TestRequests(t *testing.T) {
	long := strings.Repeat("x", 300)
	cases := []struct {
		name  string
		caps  uint32
		db    string
		steps []step
	}{
		{name: "query", db: "shop", steps: []step{
			req(query("SELECT * FROM items JOIN `db2`.prices USING (id)"), `frame/53 "SELECT" res=["items" "db2.prices"] aux="shop"`),
		}},
		{name: "query without database", steps: []step{
			req(query("select 1"), `frame/13 "SELECT"`),
		}},
		{name: "multi-statement", db: "shop", steps: []step{
			req(query("SELECT 1; DROP TABLE t"), `frame/27 "MULTI" sub="SELECT,DROP" res=["t"] aux="shop"`),
		}},
		{name: "pipelined", db: "shop", steps: []step{
			req(cat(query("SELECT a FROM t"), query("DELETE FROM u"), pkt(0, comPing), pkt(0, comQuit)),
				`frame/20 "SELECT" res=["t"] aux="shop"`, `frame/18 "DELETE" res=["u"] aux="shop"`,
				`frame/5 "PING"`, `frame/5 "QUIT" noreply control`),
		}},
		{name: "init db", steps: []step{
			req(pkt(0, comInitDB, "shop"), `frame/9 "USE" res=["shop"] aux="shop"`),
			req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"] aux="shop" overflow`),
			rep(okPkt(1, 2), `frame/11 ""`),
			req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"] aux="shop"`),
		}},
		{name: "init db refused", db: "old", steps: []step{
			req(pkt(0, comInitDB, "secret"), `frame/11 "USE" res=["secret"] aux="secret"`),
			rep(errPkt(1, 1044, "denied"), `frame/19 "" err`),
			req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"] aux="old"`),
		}},
		{name: "use statement", db: "old", steps: []step{
			req(query("USE `new`"), `frame/14 "USE" res=["new"] aux="new"`),
			rep(okPkt(1, 2), `frame/11 ""`),
			req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"] aux="new"`),
		}},
		{name: "use among statements", db: "old", steps: []step{
			req(query("USE a; SELECT * FROM t"), `frame/27 "MULTI" sub="USE,SELECT" res=["a" "t"] aux="old" overflow`),
			rep(okPkt(1, 2|statusMoreResults), `frame/11 "" partial`),
			rep(okPkt(2, 2), `frame/11 ""`),
			req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"]`),
		}},
		{name: "field list", db: "shop", steps: []step{
			req(pkt(0, comFieldList, "items\x00%"), `frame/12 "FIELD_LIST" res=["items"] aux="shop"`),
			rep(cat(colDef(1, "id"), colDef(2, "name"), eofPkt(3, 2)), `skip/92`, `frame/9 ""`),
		}},
		{name: "commands without SQL", steps: []step{
			req(cat(pkt(0, comStatistics), pkt(0, comProcessKill, le32b(7)), pkt(0, comSetOption, 0, 0), pkt(0, comResetConnection)),
				`frame/5 "STATISTICS"`, `frame/5 "PROCESS_KILL"`, `skip/4`, `frame/5 "SET_OPTION"`, `skip/2`, `frame/5 "RESET_CONNECTION"`),
			rep(cat(pkt(1, "Uptime: 5"), okPkt(1, 2), eofPkt(1, 2), okPkt(1, 2)),
				`frame/13 ""`, `frame/11 ""`, `frame/9 ""`, `frame/11 ""`),
		}},
		{name: "unknown command", steps: []step{
			req(pkt(0, 0x99, "abc"), `frame/5 "UNKNOWN_COMMAND"`, `skip/3`),
			rep(errPkt(1, 1047, "Unknown command"), `frame/28 "" err`),
		}},
		{name: "create and drop db", steps: []step{
			req(cat(pkt(0, comCreateDB, "a"), pkt(0, comDropDB, "b")), `frame/6 "CREATE_DB" res=["a"]`, `frame/6 "DROP_DB" res=["b"]`),
		}},
		{name: "change user", db: "shop", steps: []step{
			req(pkt(0, comChangeUser, "bob\x00", 2, "pw", "other\x00", 33, 0, "mysql_native_password\x00"),
				`frame/42 "CHANGE_USER" res=["bob"] aux="other"`),
			rep(pkt(1, 0xfe, "mysql_native_password\x00", "12345678901234567890\x00"), `skip/48`),
			req(pkt(2, make([]byte, 20)), `skip/24`),
			rep(okPkt(3, 2), `frame/11 ""`),
			req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"] aux="other"`),
		}},
		{name: "prepare and execute", db: "shop", steps: []step{
			req(pkt(0, comStmtPrepare, "SELECT c FROM sbtest1 WHERE id=?"), `frame/37 "SELECT" res=["sbtest1"] aux="shop"`),
			rep(cat(pkt(1, 0, le32b(5), 1, 0, 1, 0, 0, 0, 0), colDef(2, "?"), eofPkt(3, 2), colDef(4, "c"), eofPkt(5, 2)),
				`skip/109`, `frame/9 ""`),
			req(pkt(0, comStmtExecute, le32b(5), 0, le32b(1), 0, 1, 8, 0, "\x01\x00\x00\x00\x00\x00\x00\x00"),
				`frame/9 "SELECT" res=["sbtest1"] aux="shop"`, `skip/17`),
			rep(cat(pkt(1, 1), colDef(2, "c"), eofPkt(3, 2), pkt(4, 0, 0, 3, "abc"), eofPkt(5, 2)),
				`skip/66`, `frame/9 ""`),
			req(pkt(0, comStmtSendLongData, le32b(5), 0, 0, "data"), `frame/9 "SELECT" res=["sbtest1"] aux="shop" noreply`, `skip/6`),
			req(pkt(0, comStmtReset, le32b(5)), `frame/9 "STMT_RESET" control`),
			rep(okPkt(1, 2), `frame/11 ""`),
			req(pkt(0, comStmtClose, le32b(5)), `frame/9 "STMT_CLOSE" noreply control`),
			req(pkt(0, comStmtExecute, le32b(5), 0, le32b(1)), `frame/9 "EXECUTE" overflow`, `skip/5`),
		}},
		{name: "prepare refused", db: "shop", steps: []step{
			req(pkt(0, comStmtPrepare, "SELECT * FROM nothing"), `frame/26 "SELECT" res=["nothing"] aux="shop"`),
			rep(errPkt(1, 1146, "no such table"), `frame/26 "" err`),
			req(pkt(0, comStmtExecute, le32b(1), 0, le32b(1)), `frame/9 "EXECUTE" overflow`, `skip/5`),
		}},
		{name: "execute the statement prepared last", db: "shop", steps: []step{
			req(cat(pkt(0, comStmtPrepare, "INSERT INTO t VALUES (?)"), pkt(0, comStmtExecute, le32b(lastStatement), 0, le32b(1))),
				`frame/29 "INSERT" res=["t"] aux="shop"`, `frame/9 "INSERT" res=["t"] aux="shop"`, `skip/5`),
		}},
		{name: "prepare USE changes nothing", db: "a", steps: []step{
			req(pkt(0, comStmtPrepare, "USE b"), `frame/10 "USE" res=["b"] aux="a"`),
			req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"] aux="a"`),
		}},
		{name: "local infile", db: "shop", steps: []step{
			req(query("LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE t"), `frame/49 "LOAD_DATA_LOCAL" res=["t"] aux="shop"`),
			rep(pkt(1, 0xfb, "/tmp/x"), `frame/11 "" partial`),
			req(cat(pkt(2, "a,1\n"), pkt(3, "b,2\n"), pkt(4)), `skip/20`),
			rep(cat(pkt(5, 0xff, 0xff, 0xff, 1, 1, 1, 0, 0, 0, 0), okPkt(6, 2)), `skip/14`, `frame/11 ""`),
			req(query("SELECT 1"), `frame/13 "SELECT" aux="shop"`),
		}},
		{name: "ssl", steps: []step{
			req(pkt(1, le32b(mariaCaps|capSSL), le32b(1<<24), 33, make([]byte, 23)), `frame/36 "SSL" noreply`),
			req([]byte{0x16, 3, 1, 0, 5}, `pass/0`),
			rep([]byte{0x16, 3, 3, 0, 5}, `pass/0`),
		}},
		{name: "compression", steps: []step{
			req(handshake(mariaCaps|capCompress, 0, "shop"), `frame/89 "COMPRESS" aux="shop" noreply`),
			req([]byte{1, 2, 3}, `pass/0`),
		}},
		{name: "long names and queries", db: "shop", steps: []step{
			req(query("SELECT * FROM "+long), `frame/319 "SELECT" res=["`+long+`"] aux="shop"`),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p *Parser
			caps := c.caps
			if caps == 0 {
				caps = mariaCaps
			}
			if c.name == "ssl" || c.name == "compression" {
				p = NewParser()
				if r := parse(t, p, l7.DirReply, greetingPkt(0xffffffff, 0)); r.Op != l7.OpSkip {
					t.Fatalf("greeting: %v", r)
				}
			} else {
				p = session(t, caps|capConnectWithDB*b2u(c.db != ""), 0, c.db)
			}
			runSteps(t, p, c.steps)
		})
	}
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// TestQueryAttributes: MySQL 8 clients put query attributes before the
// text of COM_QUERY.
func TestQueryAttributes(t *testing.T) {
	p := NewParser()
	all := uint32(0xffffffff &^ (capCompress | capZstd | capSSL))
	runSteps(t, p, []step{
		rep(greetingPkt(all|capMySQL, 0), `skip/94`),
		req(handshake(mariaCaps|capQueryAttributes|capMySQL, 0, ""), `skip/85`),
		rep(okPkt(2, 2), `skip/11`),
		req(pkt(0, comQuery, 0, 1, "SELECT * FROM t"), `frame/22 "SELECT" res=["t"]`),
		// Two attributes: a string "trace" = "x" and a NULL.
		req(pkt(0, comQuery, 2, 1, 0x02, 1, 0xfe, 0, 5, "trace", 6, 0, 1, "n", 1, "x", "DELETE FROM u"),
			`frame/36 "DELETE" res=["u"]`),
		req(pkt(0, comQuery, 1, 1, 0, 1, 8, 0, 1, "n", 1, 2, 3, 4, 5, 6, 7, 8, "DROP TABLE v"),
			`frame/33 "DROP" res=["v"]`),
		req(pkt(0, comQuery, 1, 1, 0, 0), `error(mysql: malformed query attributes: l7: malformed message)`),
	})
}

// TestReplies: result sets of every shape, with and without
// CLIENT_DEPRECATE_EOF and MariaDB's metadata cache.
func TestReplies(t *testing.T) {
	rows := cat(colDef(2, "a"), colDef(3, "b"), eofPkt(4, 2), textRow(5, "1", "x"), textRow(6, "2", "y"), eofPkt(7, 2))
	cases := []struct {
		name  string
		caps  uint32
		ext   uint32
		steps []step
	}{
		{name: "result set", steps: []step{
			req(query("SELECT a, b FROM t"), `frame/23 "SELECT" res=["t"]`),
			rep(cat(pkt(1, 2), rows), `skip/114`, `frame/9 ""`),
		}},
		{name: "deprecate EOF", caps: capDeprecateEOF, steps: []step{
			req(query("SELECT a, b FROM t"), `frame/23 "SELECT" res=["t"]`),
			rep(cat(pkt(1, 2), colDef(2, "a"), colDef(3, "b"), textRow(4, "1", "x"), pkt(5, 0xfe, 0, 0, 2, 0, 0, 0)),
				`skip/97`, `frame/11 ""`),
		}},
		{name: "metadata cache, metadata sent", ext: extCacheMetadata, steps: []step{
			req(query("SELECT a, b FROM t"), `frame/23 "SELECT" res=["t"]`),
			rep(cat(pkt(1, 2, 1), rows), `skip/115`, `frame/9 ""`),
		}},
		{name: "metadata cache, metadata skipped", ext: extCacheMetadata, steps: []step{
			req(query("SELECT a FROM t"), `frame/20 "SELECT" res=["t"]`),
			rep(cat(pkt(1, 1, 0), eofPkt(2, 2), textRow(3, "1"), eofPkt(4, 2)), `skip/21`, `frame/9 ""`),
		}},
		{name: "several results", steps: []step{
			req(query("CALL p()"), `frame/13 "CALL" res=["p"]`),
			rep(cat(pkt(1, 2), colDef(2, "a"), colDef(3, "b"), eofPkt(4, 10), textRow(5, "1", "x"), eofPkt(6, 10),
				pkt(7, 1), colDef(8, "a"), eofPkt(9, 10), eofPkt(10, 10), okPkt(11, 2)),
				`skip/106`, `frame/9 "" partial`, `skip/56`, `frame/9 "" partial`, `frame/11 ""`),
		}},
		{name: "error in rows", steps: []step{
			req(query("SELECT a FROM t"), `frame/20 "SELECT" res=["t"]`),
			rep(cat(pkt(1, 1), colDef(2, "a"), eofPkt(3, 2), textRow(4, "1"), errPkt(5, 1317, "interrupted")),
				`skip/62`, `frame/24 "" err`),
		}},
		{name: "cursor", steps: []step{
			req(pkt(0, comStmtPrepare, "SELECT a FROM t"), `frame/20 "SELECT" res=["t"]`),
			rep(cat(pkt(1, 0, le32b(1), 1, 0, 0, 0, 0, 0, 0), colDef(2, "a"), eofPkt(3, 2)), `skip/58`, `frame/9 ""`),
			req(pkt(0, comStmtExecute, le32b(1), 1, le32b(1)), `frame/9 "SELECT" res=["t"]`, `skip/5`),
			rep(cat(pkt(1, 1), colDef(2, "a"), eofPkt(3, 2|statusCursorExists)), `skip/47`, `frame/9 ""`),
			req(pkt(0, comStmtFetch, le32b(1), le32b(10)), `frame/9 "SELECT" res=["t"]`, `skip/4`),
			rep(cat(pkt(1, 0, 0, 1, "1"), eofPkt(2, 2|0x80)), `skip/8`, `frame/9 ""`),
		}},
		{name: "prepare without definitions", steps: []step{
			req(pkt(0, comStmtPrepare, "BEGIN"), `frame/10 "BEGIN"`),
			rep(pkt(1, 0, le32b(2), 0, 0, 0, 0, 0, 0, 0), `frame/16 ""`),
		}},
		{name: "prepare with deprecate EOF", caps: capDeprecateEOF, steps: []step{
			req(pkt(0, comStmtPrepare, "SELECT a FROM t WHERE b = ?"), `frame/32 "SELECT" res=["t"]`),
			rep(cat(pkt(1, 0, le32b(2), 1, 0, 1, 0, 0, 0, 0), colDef(2, "?"), colDef(3, "a")), `skip/58`, `frame/42 ""`),
		}},
		{name: "unsolicited error", steps: []step{
			rep(errPkt(0, 1927, "Connection was killed"), `skip/34`),
		}},
		{name: "binlog dump", steps: []step{
			req(pkt(0, comBinlogDump, le32b(4), 0, 0, le32b(1), "bin.000001"), `frame/5 "BINLOG_DUMP"`, `skip/20`),
			rep(cat(pkt(1, 0, "event1"), pkt(2, 0, "event2"), eofPkt(3, 2)), `skip/22`, `frame/9 ""`),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := session(t, mariaCaps|c.caps, c.ext, "")
			runSteps(t, p, c.steps)
		})
	}
}

// TestAuthentication: the exchanges before the session, as OpSkip.
func TestAuthentication(t *testing.T) {
	p := NewParser()
	runSteps(t, p, []step{
		rep(greetingPkt(0xffffffff&^(capMySQL|capSSL|capCompress), extCacheMetadata), `skip/94`),
		req(handshake(mariaCaps, extCacheMetadata, ""), `skip/85`),
		rep(pkt(2, 0xfe, "client_ed25519\x00", "0123456789abcdef0123456789abcdef"), `skip/52`),
		// A command pipelined before the login's OK is framed.
		req(cat(pkt(3, make([]byte, 64)), query("SELECT 1 FROM t")), `skip/68`, `frame/20 "SELECT" res=["t"]`),
		rep(pkt(4, 0, 0, 0, 2, 0x40, 0, 0, 0, 7, 1, 5, 4, "shop"), `skip/20`),
		rep(cat(pkt(1, 1, 1), colDef(2, "1"), eofPkt(3, 2), textRow(4, "1"), eofPkt(5, 2)), `skip/63`, `frame/9 ""`),
		req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"] aux="shop"`),
	})
	if p.ext != extCacheMetadata {
		t.Errorf("negotiated extended capabilities %#x", p.ext)
	}
}

func TestLoginFails(t *testing.T) {
	p := NewParser()
	runSteps(t, p, []step{
		rep(greetingPkt(0xffffffff, 0), `skip/94`),
		req(handshake(mariaCaps, 0, ""), `skip/85`),
		rep(errPkt(2, 1045, "Access denied"), `skip/26`),
		rep(okPkt(3, 2), `error(mysql: data after the session ended: l7: malformed message)`),
	})
}

func TestMalformed(t *testing.T) {
	big := make([]byte, headerLen+MaxPacket)
	big[0], big[1], big[2], big[4] = 0xff, 0xff, 0xff, comQuery
	cases := []struct {
		name string
		dir  l7.Dir
		in   []byte
		want error
	}{
		{"empty command", l7.DirRequest, pkt(0), l7.ErrMalformed},
		{"out of sequence", l7.DirRequest, pkt(3, comQuery, "SELECT 1"), l7.ErrMalformed},
		{"query over one packet", l7.DirRequest, big[:10], l7.ErrTooLong},
		{"COM_MULTI", l7.DirRequest, pkt(0, comMulti, 1, 2, 3), l7.ErrMalformed},
		{"short execute", l7.DirRequest, pkt(0, comStmtExecute, 1, 2), l7.ErrMalformed},
		{"change user without user", l7.DirRequest, pkt(0, comChangeUser, "bob"), l7.ErrMalformed},
		{"verb too long", l7.DirRequest, query(strings.Repeat("A", 100)), l7.ErrTooLong},
		{"reply without request", l7.DirReply, okPkt(1, 2), l7.ErrMalformed},
		{"empty reply packet", l7.DirReply, pkt(1), l7.ErrMalformed},
		{"bad direction", l7.Dir(7), query("SELECT 1"), l7.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := session(t, mariaCaps, 0, "")
			r := parse(t, p, c.dir, c.in)
			if !errors.Is(r.Err, c.want) {
				t.Fatalf("got %v, want %v", r, c.want)
			}
		})
	}
	t.Run("handshake", func(t *testing.T) {
		for name, in := range map[string][]byte{
			"wrong sequence":  pkt(0, make([]byte, 40)),
			"too short":       pkt(1, make([]byte, 10)),
			"old protocol":    pkt(1, le32b(0), make([]byte, 40)),
			"no user end":     pkt(1, le32b(mariaCaps), make([]byte, 28), "root"),
			"32 bytes no SSL": pkt(1, le32b(mariaCaps), make([]byte, 28)),
		} {
			if r := parse(t, NewParser(), l7.DirRequest, in); !errors.Is(r.Err, l7.ErrMalformed) {
				t.Errorf("%s: %v", name, r)
			}
		}
	})
	t.Run("greeting", func(t *testing.T) {
		for name, in := range map[string][]byte{
			"protocol 9":  pkt(0, 9, "5.0\x00", make([]byte, 20)),
			"no version":  pkt(0, 10, "5.0"),
			"short":       pkt(0, 10, "5\x00", 1, 2, 3),
			"reply empty": pkt(0),
		} {
			if r := parse(t, NewParser(), l7.DirReply, in); !errors.Is(r.Err, l7.ErrMalformed) {
				t.Errorf("%s: %v", name, r)
			}
		}
	})
	t.Run("reply shapes", func(t *testing.T) {
		for name, s := range map[string][2][]byte{
			"prepare answered by rows":   {pkt(0, comStmtPrepare, "SELECT 1"), pkt(1, 1)},
			"infile for execute":         {pkt(0, comStmtExecute, le32b(1), 0, le32b(1)), pkt(1, 0xfb, "x")},
			"column count zero":          {query("SELECT 1"), pkt(1, 0xfc, 0, 0)},
			"no EOF after columns":       {query("SELECT 1"), cat(pkt(1, 1), colDef(2, "a"), textRow(3, "1"))},
			"change user answered oddly": {pkt(0, comChangeUser, "u\x00", 0, "\x00"), pkt(1, 7)},
		} {
			p := session(t, mariaCaps, 0, "")
			if r := parse(t, p, l7.DirRequest, s[0]); r.Op != l7.OpFrame {
				t.Fatalf("%s: request %v", name, r)
			}
			var r result
			for data := s[1]; len(data) > 0; data = data[r.N:] {
				if r = parse(t, p, l7.DirReply, data); r.Err != nil || r.Op == l7.OpMore {
					break
				}
			}
			if !errors.Is(r.Err, l7.ErrMalformed) {
				t.Errorf("%s: %v", name, r)
			}
		}
	})
	t.Run("too many pending", func(t *testing.T) {
		p := session(t, mariaCaps, 0, "")
		for i := 0; i < MaxPending; i++ {
			if r := parse(t, p, l7.DirRequest, pkt(0, comPing)); r.Op != l7.OpFrame {
				t.Fatalf("ping %d: %v", i, r)
			}
		}
		if r := parse(t, p, l7.DirRequest, pkt(0, comPing)); !errors.Is(r.Err, l7.ErrTooLong) {
			t.Fatalf("got %v", r)
		}
	})
}

// TestDenied: the proxy answers a denied command itself, so the parser
// must not wait for the server's reply nor keep what the command would
// have changed.
func TestDenied(t *testing.T) {
	p := session(t, mariaCaps|capConnectWithDB, 0, "old")
	var f l7.Frame
	deny := func(data []byte) {
		t.Helper()
		if op, _, err := p.Parse(l7.DirRequest, data, &f); op != l7.OpFrame || err != nil {
			t.Fatalf("%v %v", op, err)
		}
		p.Denied(&f)
	}
	deny(pkt(0, comInitDB, "secret"))
	deny(pkt(0, comStmtPrepare, "SELECT * FROM secret"))
	deny(query("SELECT * FROM secret"))
	runSteps(t, p, []step{
		req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"] aux="old"`),
		rep(okPkt(1, 2), `frame/11 ""`),
		rep(okPkt(1, 2), `error(mysql: reply without a request: l7: malformed message)`),
	})
	if p.stmts.e[0].state != stmtFree {
		t.Errorf("the denied statement keeps its entry")
	}
	// A denied NoReply command changes nothing.
	p = session(t, mariaCaps, 0, "")
	if r := parse(t, p, l7.DirRequest, pkt(0, comPing)); r.Op != l7.OpFrame {
		t.Fatal(r)
	}
	if _, _, err := p.Parse(l7.DirRequest, pkt(0, comQuit), &f); err != nil {
		t.Fatal(err)
	}
	p.Denied(&f)
	if p.pN != 1 {
		t.Errorf("pending %d, want 1", p.pN)
	}
	// A denied SSL request ends the session.
	p = NewParser()
	if _, _, err := p.Parse(l7.DirRequest, pkt(1, le32b(mariaCaps|capSSL), le32b(1<<24), 33, make([]byte, 23)), &f); err != nil {
		t.Fatal(err)
	}
	p.Denied(&f)
	if r := parse(t, p, l7.DirRequest, []byte{0x16, 3, 1}); !errors.Is(r.Err, l7.ErrMalformed) {
		t.Errorf("after a denied SSL request: %v", r)
	}
}

func TestStatementTable(t *testing.T) {
	p := session(t, mariaCaps, 0, "")
	// Fill the table, use statement 1 again, then prepare one more: the
	// least recently used, statement 2, goes.
	prep := func(i int) {
		runSteps(t, p, []step{
			req(pkt(0, comStmtPrepare, fmt.Sprintf("SELECT * FROM t%d", i)), fmt.Sprintf(`frame/%d "SELECT" res=["t%d"]`, 20+len(fmt.Sprint(i)), i)),
			rep(pkt(1, 0, le32b(uint32(i)), 0, 0, 0, 0, 0, 0, 0), `frame/16 ""`),
		})
	}
	for i := 1; i <= MaxStatements; i++ {
		prep(i)
	}
	runSteps(t, p, []step{req(pkt(0, comStmtExecute, le32b(1), 0, le32b(1)), `frame/9 "SELECT" res=["t1"]`, `skip/5`), rep(okPkt(1, 2), `frame/11 ""`)})
	prep(MaxStatements + 1)
	runSteps(t, p, []step{
		req(pkt(0, comStmtExecute, le32b(1), 0, le32b(1)), `frame/9 "SELECT" res=["t1"]`, `skip/5`),
		req(pkt(0, comStmtExecute, le32b(2), 0, le32b(1)), `frame/9 "EXECUTE" overflow`, `skip/5`),
		req(pkt(0, comStmtExecute, le32b(3), 0, le32b(1)), `frame/9 "SELECT" res=["t3"]`, `skip/5`),
		req(pkt(0, comStmtExecute, le32b(MaxStatements+1), 0, le32b(1)), fmt.Sprintf(`frame/9 "SELECT" res=["t%d"]`, MaxStatements+1), `skip/5`),
	})
	// COM_RESET_CONNECTION forgets every statement.
	p = session(t, mariaCaps, 0, "")
	runSteps(t, p, []step{
		req(pkt(0, comStmtPrepare, "SELECT * FROM t"), `frame/20 "SELECT" res=["t"]`),
		rep(pkt(1, 0, le32b(1), 0, 0, 0, 0, 0, 0, 0), `frame/16 ""`),
		req(pkt(0, comResetConnection), `frame/5 "RESET_CONNECTION"`),
		rep(okPkt(1, 2), `frame/11 ""`),
		req(pkt(0, comStmtExecute, le32b(1), 0, le32b(1)), `frame/9 "EXECUTE" overflow`, `skip/5`),
	})
	// What does not fit in an entry sets Overflow on its executions.
	p = session(t, mariaCaps, 0, "")
	long := strings.Repeat("a", 250)
	runSteps(t, p, []step{
		req(pkt(0, comStmtPrepare, "SELECT * FROM "+long+", b"), fmt.Sprintf(`frame/%d "SELECT" res=["%s" "b"]`, 22+len(long), long)),
		rep(pkt(1, 0, le32b(1), 0, 0, 0, 0, 0, 0, 0), `frame/16 ""`),
		req(pkt(0, comStmtExecute, le32b(1), 0, le32b(1)), fmt.Sprintf(`frame/9 "SELECT" res=["%s"] overflow`, long), `skip/5`),
	})
}

// TestRecorded parses the bytes recorded from the mariadb 10.11 client,
// mariadb-admin and sysbench 1.0 against mariadbd 10.11 (see
// testdata/README.md): every command that expects a reply gets exactly one
// final reply frame.
func TestRecorded(t *testing.T) {
	want := map[string][]string{
		"select": {`frame/40 "SELECT" res=["items"] aux="shop"`, `frame/31 "SELECT" res=["items"] aux="shop"`,
			`frame/5 "QUIT" noreply control`},
		"multi-statement": {`frame/95 "MULTI" sub="SELECT,UPDATE" res=["items"] aux="shop"`, `frame/5 "QUIT" noreply control`},
		"init-db": {`frame/13 "SELECT" aux="shop"`, `frame/22 "SELECT" aux="shop"`, `frame/11 "USE" res=["sbtest"] aux="sbtest"`,
			`frame/33 "SELECT" res=["sbtest1"] aux="sbtest"`, `frame/38 "RESETCONNECTION" aux="sbtest"`, `frame/5 "QUIT" noreply control`},
		"load-data-local": {`frame/61 "CREATE" res=["csv"] aux="shop"`, `frame/89 "LOAD_DATA_LOCAL" res=["csv"] aux="shop"`,
			`frame/5 "QUIT" noreply control`},
		"ssl":                 {`frame/36 "SSL" noreply`},
		"auth-switch-ed25519": {`frame/31 "SELECT" res=["items"] aux="shop"`, `frame/5 "QUIT" noreply control`},
		"status":              {`frame/5 "STATISTICS"`, `frame/5 "QUIT" noreply control`},
	}
	for _, rec := range recordings(t) {
		t.Run(rec.name, func(t *testing.T) {
			reqs, reps := replay(t, rec, 0)
			asked, answered := 0, 0
			var got []string
			for _, r := range frames(reqs) {
				got = append(got, r.String())
				if !r.NoReply {
					asked++
				}
			}
			for _, r := range frames(reps) {
				if !r.Partial {
					answered++
				}
			}
			if asked != answered {
				t.Fatalf("%d requests expect a reply, %d final replies:\n%v\n%v", asked, answered, reqs, reps)
			}
			if asked == 0 && rec.name != "bad-password" && rec.name != "ssl" {
				t.Fatalf("no requests")
			}
			if w, ok := want[rec.name]; ok {
				if diff := cmp.Diff(w, got); diff != "" {
					t.Fatalf("request frames (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestSysbenchPrepared: sysbench's prepared statements keep their verb and
// table through COM_STMT_EXECUTE.
func TestSysbenchPrepared(t *testing.T) {
	for _, name := range []string{"oltp-read-only-ps", "oltp-read-write-ps"} {
		var rec recording
		for _, r := range recordings(t) {
			if r.name == name {
				rec = r
			}
		}
		reqs, _ := replay(t, rec, 0)
		verbs := map[string]int{}
		for _, r := range frames(reqs) {
			if r.Verb == "EXECUTE" || r.Overflow {
				t.Fatalf("%s: unknown statement: %v", name, r)
			}
			if len(r.Res) > 0 && r.Res[0] != "sbtest1" {
				t.Fatalf("%s: %v", name, r)
			}
			verbs[r.Verb]++
		}
		t.Logf("%s: %v", name, verbs)
		if verbs["SELECT"] < 10 || verbs["BEGIN"] == 0 || verbs["COMMIT"] == 0 {
			t.Fatalf("%s: verbs %v", name, verbs)
		}
		if name == "oltp-read-write-ps" && (verbs["UPDATE"] == 0 || verbs["DELETE"] == 0 || verbs["INSERT"] == 0) {
			t.Fatalf("%s: verbs %v", name, verbs)
		}
	}
}

// TestOneByteAtATime feeds every recording growing the input one byte (and
// three bytes) at a time: each OpMore asks for at least one byte and the
// frames equal those of the whole-buffer parse.
func TestOneByteAtATime(t *testing.T) {
	for _, rec := range recordings(t) {
		t.Run(rec.name, func(t *testing.T) {
			wq, wp := replay(t, rec, 0)
			for _, step := range []int{1, 3} {
				gq, gp := replay(t, rec, step)
				if diff := cmp.Diff(frames(wq), frames(gq)); diff != "" {
					t.Fatalf("step %d: request frames (-whole +split):\n%s", step, diff)
				}
				if diff := cmp.Diff(frames(wp), frames(gp)); diff != "" {
					t.Fatalf("step %d: reply frames (-whole +split):\n%s", step, diff)
				}
			}
		})
	}
}

// stream parses data in one direction from a copy of p, handing it
// data[:cut] until it needs more, then all of data.
func streamCut(t *testing.T, p *Parser, dir l7.Dir, data []byte, cut int) []string {
	t.Helper()
	var out []string
	off := 0
	for off < len(data) {
		end := len(data)
		if off < cut {
			end = cut
		}
		r := parse(t, p, dir, data[off:end])
		if r.Op == l7.OpMore && end < len(data) {
			r = parse(t, p, dir, data[off:])
		}
		if r.Err != nil {
			t.Fatalf("cut %d offset %d: %v", cut, off, r.Err)
		}
		if r.Op == l7.OpMore {
			t.Fatalf("cut %d: stream ends inside a message at %d", cut, off)
		}
		if r.Op == l7.OpFrame {
			out = append(out, r.String())
		}
		off += r.N
	}
	return out
}

// TestSplitPipelines cuts a pipeline of requests, and the replies to it,
// at every byte: the frames never change.
func TestSplitPipelines(t *testing.T) {
	reqs := cat(
		pkt(0, comStmtPrepare, "SELECT c FROM sbtest1 WHERE id=?"),
		query("SELECT a, b FROM t; SELECT 2"),
		pkt(0, comInitDB, "shop"),
		pkt(0, comStmtExecute, le32b(lastStatement), 0, le32b(1), 0, 1, 8, 0, "\x01\x00\x00\x00\x00\x00\x00\x00"),
		pkt(0, comStmtSendLongData, le32b(lastStatement), 0, 0, "data"),
		pkt(0, comFieldList, "items\x00"),
		pkt(0, comStatistics),
		pkt(0, comPing),
		pkt(0, comQuit),
	)
	reps := cat(
		pkt(1, 0, le32b(5), 1, 0, 1, 0, 0, 0, 0), colDef(2, "?"), eofPkt(3, 2), colDef(4, "c"), eofPkt(5, 2),
		pkt(1, 2), colDef(2, "a"), colDef(3, "b"), eofPkt(4, 10), textRow(5, "1", "x"), textRow(6, "2", strings.Repeat("y", 200)), eofPkt(7, 10),
		pkt(8, 1), colDef(9, "2"), eofPkt(10, 2), textRow(11, "2"), eofPkt(12, 2),
		pkt(1, 0, 0, 0, 2, 0x40, 0, 0, 0, 7, 1, 5, 4, "shop"),
		pkt(1, 1, 0), eofPkt(2, 2), pkt(3, 0, 0, 3, "abc"), eofPkt(4, 2),
		colDef(1, "id"), eofPkt(2, 2),
		pkt(1, "Uptime: 1"),
		okPkt(1, 2),
	)
	base := session(t, mariaCaps, extCacheMetadata, "")
	wantReq := streamCut(t, clone(base), l7.DirRequest, reqs, 0)
	afterReq := clone(base)
	streamCut(t, afterReq, l7.DirRequest, reqs, 0)
	wantRep := streamCut(t, clone(afterReq), l7.DirReply, reps, 0)
	if len(wantReq) != 9 || len(wantRep) != 8 {
		t.Fatalf("frames:\n%v\n%v", wantReq, wantRep)
	}
	for cut := 1; cut < len(reqs); cut++ {
		if got := streamCut(t, clone(base), l7.DirRequest, reqs, cut); !cmp.Equal(got, wantReq) {
			t.Fatalf("requests cut at %d:\n%s", cut, cmp.Diff(wantReq, got))
		}
	}
	for cut := 1; cut < len(reps); cut++ {
		if got := streamCut(t, clone(afterReq), l7.DirReply, reps, cut); !cmp.Equal(got, wantRep) {
			t.Fatalf("replies cut at %d:\n%s", cut, cmp.Diff(wantRep, got))
		}
	}
}

// clone copies a parser and its statement table.
func clone(p *Parser) *Parser {
	q := *p
	if p.stmts != nil {
		s := *p.stmts
		q.stmts = &s
	}
	return &q
}

// TestLargeRow streams a row of more than one packet: its bytes are
// skipped as they come and never asked for whole.
func TestLargeRow(t *testing.T) {
	p := session(t, mariaCaps, 0, "")
	runSteps(t, p, []step{
		req(query("SELECT b FROM t"), `frame/20 "SELECT" res=["t"]`),
		rep(cat(pkt(1, 1), colDef(2, "b"), eofPkt(3, 2)), `skip/56`),
	})
	first := make([]byte, headerLen+MaxPacket)
	first[0], first[1], first[2], first[3] = 0xff, 0xff, 0xff, 4
	first[4] = 0xfe // lenenc: an 8-byte length follows
	rest := cat(pkt(5, "tail"), eofPkt(6, 2))
	total := 0
	for off := 0; off < len(first); {
		end := min(off+1<<20, len(first))
		r := parse(t, p, l7.DirReply, first[off:end])
		if r.Op != l7.OpSkip {
			t.Fatalf("offset %d: %v", off, r)
		}
		off += r.N
		total += r.N
	}
	runSteps(t, p, []step{rep(rest, `skip/8`, `frame/9 ""`)})
	if p.pN != 0 {
		t.Fatalf("pending %d", p.pN)
	}
	if total != len(first) {
		t.Fatalf("skipped %d of %d", total, len(first))
	}
}

func TestSessionTracking(t *testing.T) {
	p := session(t, mariaCaps, 0, "")
	runSteps(t, p, []step{
		req(query("CALL switch_db()"), `frame/21 "CALL" res=["switch_db"]`),
		rep(pkt(1, 0, 0, 0, 2, 0x40, 0, 0, 0, 0x0a, 1, 8, 7, "archive"), `frame/23 ""`),
		req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"] aux="archive"`),
	})
	// Without CLIENT_SESSION_TRACK the state change is not read.
	p = session(t, mariaCaps&^capSessionTrack, 0, "")
	runSteps(t, p, []step{
		req(query("CALL switch_db()"), `frame/21 "CALL" res=["switch_db"]`),
		rep(pkt(1, 0, 0, 0, 2, 0x40, 0, 0, 0, 0x0a, 1, 8, 7, "archive"), `frame/23 ""`),
		req(query("SELECT 1 FROM t"), `frame/20 "SELECT" res=["t"]`),
	})
}

func TestAllocs(t *testing.T) {
	p := session(t, mariaCaps|capConnectWithDB, 0, "shop")
	var f l7.Frame
	prepare := pkt(0, comStmtPrepare, "SELECT c FROM sbtest1 WHERE id=?")
	prepOK := cat(pkt(1, 0, le32b(1), 1, 0, 1, 0, 0, 0, 0), colDef(2, "?"), eofPkt(3, 2), colDef(4, "c"), eofPkt(5, 2))
	q := query("SELECT a.x, b.y FROM db.t1 a JOIN `t2` b ON a.id = b.id WHERE a.z IN (SELECT z FROM t3)")
	exec := pkt(0, comStmtExecute, le32b(1), 0, le32b(1), 0, 1, 8, 0, "\x01\x00\x00\x00\x00\x00\x00\x00")
	result := cat(pkt(1, 2), colDef(2, "a"), colDef(3, "b"), eofPkt(4, 2), textRow(5, "1", "x"), textRow(6, "2", "y"), eofPkt(7, 2))
	all := func(dir l7.Dir, data []byte) {
		for len(data) > 0 {
			op, n, err := p.Parse(dir, data, &f)
			if err != nil || op == l7.OpMore {
				t.Fatalf("%v %d %v", op, n, err)
			}
			data = data[n:]
		}
	}
	all(l7.DirRequest, prepare) // allocates the statement table once
	all(l7.DirReply, prepOK)
	for name, fn := range map[string]func(){
		"query and result set": func() { all(l7.DirRequest, q); all(l7.DirReply, result) },
		"execute and result":   func() { all(l7.DirRequest, exec); all(l7.DirReply, result) },
		"prepare":              func() { all(l7.DirRequest, prepare); all(l7.DirReply, prepOK) },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
	dst := make([]byte, 0, 512)
	f = l7.Frame{Verb: []byte("SELECT"), Resource: []byte("secret")}
	if n := testing.AllocsPerRun(100, func() { dst = Deny(dst[:0], &f, "no rule allows it") }); n != 0 {
		t.Errorf("Deny: %v allocations", n)
	}
	g := greetingPkt(0xffffffff, 0)
	if n := testing.AllocsPerRun(100, func() { Sniff(g) }); n != 0 {
		t.Errorf("Sniff: %v allocations", n)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"query-point-select", query("SELECT c FROM sbtest1 WHERE id=5001")},
		{"query-join", query("select a.x, b.y from db.t1 a join `t2` b on a.id = b.id, t3 where a.z in (select z from t4 where w = 'x''y') order by 1 limit 10")},
		{"execute", pkt(0, comStmtExecute, le32b(1), 0, le32b(1), 0, 1, 8, 0, "\x01\x00\x00\x00\x00\x00\x00\x00")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := session(b, mariaCaps|capConnectWithDB, 0, "sbtest")
			var f l7.Frame
			if _, _, err := p.Parse(l7.DirRequest, pkt(0, comStmtPrepare, "SELECT c FROM sbtest1 WHERE id=?"), &f); err != nil {
				b.Fatal(err)
			}
			if _, _, err := p.Parse(l7.DirReply, pkt(1, 0, le32b(1), 0, 0, 0, 0, 0, 0, 0), &f); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.data)))
			for b.Loop() {
				data := bc.data
				for len(data) > 0 {
					_, n, err := p.Parse(l7.DirRequest, data, &f)
					if err != nil {
						b.Fatal(err)
					}
					data = data[n:]
				}
				p.pN, p.pHead = 0, 0 // no replies follow
			}
		})
	}
}

// BenchmarkParseReply parses the reply to sysbench's range query: a
// binary result set of 100 rows of 121 bytes (the rows are streamed).
func BenchmarkParseReply(b *testing.B) {
	p := session(b, mariaCaps|capConnectWithDB, extCacheMetadata, "sbtest")
	var f l7.Frame
	exec := pkt(0, comStmtExecute, le32b(1), 0, le32b(1))
	reply := cat(pkt(1, 1, 0), eofPkt(2, 2))
	for i := 0; i < 100; i++ {
		reply = append(reply, pkt(byte(3+i), 0, 0, 119, strings.Repeat("7", 119))...)
	}
	reply = append(reply, eofPkt(103, 2)...)
	packets := 103
	b.ReportAllocs()
	b.SetBytes(int64(len(reply)))
	for b.Loop() {
		for data := exec; len(data) > 0; {
			_, n, err := p.Parse(l7.DirRequest, data, &f)
			if err != nil {
				b.Fatal(err)
			}
			data = data[n:]
		}
		for data := reply; len(data) > 0; {
			op, n, err := p.Parse(l7.DirReply, data, &f)
			if err != nil || op == l7.OpMore {
				b.Fatal(op, err)
			}
			data = data[n:]
		}
	}
	// Per message: the reply's packets and the COM_STMT_EXECUTE before them.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*(packets+1)), "ns/msg")
}

func BenchmarkDeny(b *testing.B) {
	f := l7.Frame{Verb: []byte("SELECT"), Resource: []byte("shop.items")}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		dst = Deny(dst[:0], &f, "no rule allows it")
	}
	b.SetBytes(int64(len(dst)))
}

func BenchmarkSniff(b *testing.B) {
	g := greetingPkt(0xffffffff, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(g)))
	for b.Loop() {
		Sniff(g)
	}
}
