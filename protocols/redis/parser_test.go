package redis

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// result is one Parse answer with its Frame copied into strings, so that
// results compare with == and print readably.
type result struct {
	Op       l7.Op
	N        int
	Err      error
	Dir      l7.Dir
	Verb     string
	Sub      string
	Resource string
	Aux      string
	Args     int
	IsErr    bool
}

func (r result) String() string {
	if r.Err != nil {
		return fmt.Sprintf("error %v", r.Err)
	}
	if r.Op == l7.OpMore {
		return fmt.Sprintf("more %d", r.N)
	}
	return fmt.Sprintf("%v %d {%v verb=%q sub=%q res=%q aux=%q args=%d err=%v}",
		r.Op, r.N, r.Dir, r.Verb, r.Sub, r.Resource, r.Aux, r.Args, r.IsErr)
}

func (r result) Answer() (l7.Op, int, error) { return r.Op, r.N, r.Err }

func resultOf(op l7.Op, n int, err error, f *l7.Frame) result {
	if err != nil {
		return result{Err: err}
	}
	if op == l7.OpMore {
		return result{Op: op, N: n}
	}
	return result{Op: op, N: n, Dir: f.Dir, Verb: string(f.Verb), Sub: string(f.Sub),
		Resource: string(f.Resource), Aux: string(f.Aux), Args: f.Args, IsErr: f.Err}
}

// parse runs one Parse call and checks what must hold for every answer.
func parse(t testing.TB, p *Parser, dir l7.Dir, data []byte) result {
	t.Helper()
	var f l7.Frame
	op, n, err := p.Parse(dir, data, &f)
	l7test.Check{}.Answer(t, dir, data, op, n, err, &f)
	return resultOf(op, n, err, &f)
}

// parser is p's checked Parse in one direction, for the l7test drivers.
func parser(p *Parser, dir l7.Dir) l7test.ParseFunc[result] {
	return func(t testing.TB, data []byte) result { return parse(t, p, dir, data) }
}

func wholeStream(t testing.TB, dir l7.Dir, data []byte, lim Limits) []result {
	t.Helper()
	return l7test.Whole(t, parser(NewParserWithLimits(lim), dir), data)
}

func frame(n int, verb, sub, res string, args int) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirRequest, Verb: verb, Sub: sub, Resource: res, Args: args}
}

func reply(n, args int, isErr bool) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirReply, Args: args, IsErr: isErr}
}

func skip(dir l7.Dir, n int) result { return result{Op: l7.OpSkip, N: n, Dir: dir} }

func more(n int) result { return result{Op: l7.OpMore, N: n} }

// parseCase is one input and the answer of a fresh parser with lim.
type parseCase struct {
	name string
	in   string
	lim  Limits
	want result
	err  error // l7.ErrMalformed or l7.ErrTooLong, instead of want
}

func (c parseCase) check(t *testing.T, dir l7.Dir) {
	t.Helper()
	got := parse(t, NewParserWithLimits(c.lim), dir, []byte(c.in))
	if c.err != nil {
		if !errors.Is(got.Err, c.err) {
			t.Fatalf("Parse(%q) = %v, want error %v", c.in, got, c.err)
		}
		return
	}
	if got != c.want {
		t.Fatalf("Parse(%q)\n got %v\nwant %v", c.in, got, c.want)
	}
}

var requestCases = []parseCase{
	// Multibulk.
	{name: "get", in: "*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n", want: frame(22, "GET", "", "foo", 2)},
	{name: "set then pipelined ping", in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nPING\r\n", want: frame(27, "SET", "", "k", 3)},
	{name: "lower case", in: "*2\r\n$3\r\nget\r\n$1\r\nk\r\n", want: frame(20, "get", "", "k", 2)},
	{name: "mixed case container", in: "*3\r\n$6\r\nConfig\r\n$3\r\ngEt\r\n$9\r\nmaxmemory\r\n", want: frame(40, "Config", "gEt", "maxmemory", 3)},
	{name: "container without sub-command", in: "*1\r\n$7\r\nCOMMAND\r\n", want: frame(17, "COMMAND", "", "", 1)},
	{name: "client setname", in: "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$3\r\napp\r\n", want: frame(38, "CLIENT", "SETNAME", "app", 3)},
	{name: "xinfo stream", in: "*3\r\n$5\r\nxinfo\r\n$6\r\nSTREAM\r\n$1\r\ns\r\n", want: frame(34, "xinfo", "STREAM", "s", 3)},
	{name: "auth keeps its secret out of the frame", in: "*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n", want: frame(26, "AUTH", "", "", 2)},
	{name: "hello with auth", in: "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n", want: frame(46, "HELLO", "", "", 5)},
	{name: "eval with a key", in: "*4\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n1\r\n$3\r\nkey\r\n", want: frame(44, "EVAL", "", "key", 4)},
	{name: "eval without keys", in: "*3\r\n$4\r\neval\r\n$8\r\nreturn 1\r\n$1\r\n0\r\n", want: frame(35, "eval", "", "", 3)},
	{name: "ping", in: "*1\r\n$4\r\nPING\r\n", want: frame(14, "PING", "", "", 1)},
	{name: "empty command name", in: "*1\r\n$0\r\n\r\n", want: frame(10, "", "", "", 1)},
	{name: "binary key", in: "*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n", want: frame(23, "GET", "", "a\r\nb", 2)},
	{name: "verb of 64 bytes", in: "*1\r\n$64\r\n" + strings.Repeat("A", 64) + "\r\n", want: frame(75, strings.Repeat("A", 64), "", "", 1)},
	{name: "*0 is ignored", in: "*0\r\n", want: skip(l7.DirRequest, 4)},
	{name: "*-1 is ignored", in: "*-1\r\n*1\r\n$4\r\nPING\r\n", want: skip(l7.DirRequest, 5)},

	// Inline.
	{name: "inline ping", in: "PING\r\n", want: frame(6, "PING", "", "", 1)},
	{name: "inline bare LF", in: "PING\n", want: frame(5, "PING", "", "", 1)},
	{name: "inline get", in: "GET foo\r\n", want: frame(9, "GET", "", "foo", 2)},
	{name: "inline blanks", in: "  SET\tk   v  \r\n", want: frame(15, "SET", "", "k", 3)},
	{name: "inline mixed case container", in: "config Get port\r\n", want: frame(17, "config", "Get", "port", 3)},
	{name: "inline quoted key", in: "SET \"my key\" 'v a l'\r\n", want: frame(22, "SET", "", "my key", 3)},
	{name: "inline escape outside the fields", in: "SET k \"a\\nb\\x41\"\r\n", want: frame(18, "SET", "", "k", 3)},
	{name: "inline empty quoted", in: "GET \"\"\r\n", want: frame(8, "GET", "", "", 2)},
	{name: "inline CR splits like redis-server", in: "GET\rfoo\r\n", want: frame(9, "GET", "", "foo", 2)},
	{name: "inline vertical tab stays in the word", in: "GET a\vb\r\n", want: frame(9, "GET", "", "a\vb", 2)},
	{name: "inline pipelined", in: "PING\r\nPING\r\n", want: frame(6, "PING", "", "", 1)},
	{name: "inline empty line", in: "\r\n", want: skip(l7.DirRequest, 2)},
	{name: "inline empty LF", in: "\nPING\r\n", want: skip(l7.DirRequest, 1)},
	{name: "inline blank line", in: " \t \r\n", want: skip(l7.DirRequest, 5)},
	{name: "inline binary junk is a command", in: "\x16\x03\x01 x\n", want: frame(6, "\x16\x03\x01", "", "x", 2)},

	// Incomplete.
	{name: "nothing", in: "", want: more(1)},
	{name: "star", in: "*", want: more(3)},
	{name: "star minus", in: "*-", want: more(3)},
	{name: "count digits", in: "*2", want: more(2 + 2*minArg)},
	{name: "count CR", in: "*2\r", want: more(1 + 2*minArg)},
	{name: "header only", in: "*2\r\n", want: more(2 * minArg)},
	{name: "dollar", in: "*1\r\n$", want: more(5)},
	{name: "known bulk length", in: "*2\r\n$3\r\nGET\r\n$1000\r\n", want: more(1002)},
	{name: "part of a known bulk", in: "*2\r\n$3\r\nGET\r\n$1000\r\nabc", want: more(999)},
	{name: "bulk then more arguments", in: "*3\r\n$3\r\nSET\r\n$1000\r\n", want: more(1002 + minArg)},
	{name: "payload without CRLF", in: "*1\r\n$4\r\nPING", want: more(2)},
	{name: "inline without LF", in: "PING", want: more(1)},
	{name: "inline with CR only", in: "PING\r", want: more(1)},

	// Malformed.
	{name: "argument not a bulk", in: "*2\r\n+GET\r\n", err: l7.ErrMalformed},
	{name: "payload not followed by CRLF", in: "*1\r\n$3\r\nGETxx", err: l7.ErrMalformed},
	{name: "payload followed by LF LF", in: "*1\r\n$3\r\nGET\n\n", err: l7.ErrMalformed},
	{name: "count not a number", in: "*x\r\n", err: l7.ErrMalformed},
	{name: "count with leading zero", in: "*01\r\n", err: l7.ErrMalformed},
	{name: "count with plus sign", in: "*+1\r\n", err: l7.ErrMalformed},
	{name: "count below -1", in: "*-2\r\n", err: l7.ErrMalformed},
	{name: "count -0", in: "*-0\r\n", err: l7.ErrMalformed},
	{name: "count -10", in: "*-10\r\n", err: l7.ErrMalformed},
	{name: "count with LF only", in: "*1\n", err: l7.ErrMalformed},
	{name: "count with CR CR", in: "*1\r\r", err: l7.ErrMalformed},
	{name: "count with space", in: "*1 \r\n", err: l7.ErrMalformed},
	{name: "null bulk argument", in: "*1\r\n$-1\r\n", err: l7.ErrMalformed},
	{name: "bulk length with leading zero", in: "*1\r\n$04\r\nPING\r\n", err: l7.ErrMalformed},
	{name: "bulk length empty", in: "*1\r\n$\r\n", err: l7.ErrMalformed},
	{name: "inline unterminated quote", in: "GET \"foo\r\n", err: l7.ErrMalformed},
	{name: "inline text after closing quote", in: "GET \"foo\"bar\r\n", err: l7.ErrMalformed},
	{name: "inline unterminated single quote", in: "GET 'foo\r\n", err: l7.ErrMalformed},
	{name: "inline escaped key", in: "GET \"a\\x41\"\r\n", err: l7.ErrMalformed},
	{name: "inline escaped single-quoted key", in: "GET 'a\\'b'\r\n", err: l7.ErrMalformed},
	{name: "inline quote inside the command", in: "G\"E\"T k\r\n", err: l7.ErrMalformed},
	{name: "inline escaped sub-command", in: "CONFIG \"G\\x45T\" port\r\n", err: l7.ErrMalformed},
	{name: "inline NUL", in: "GET a\x00b\r\n", err: l7.ErrMalformed},

	// Over a limit.
	{name: "count overflows", in: "*99999999999999999999999999\r\n", err: l7.ErrTooLong},
	{name: "bulk length overflows", in: "*1\r\n$99999999999999999999999999\r\n", err: l7.ErrTooLong},
	{name: "verb too long", in: "*1\r\n$65\r\n", err: l7.ErrTooLong},
	{name: "inline verb too long", in: strings.Repeat("A", 65) + "\r\n", err: l7.ErrTooLong},
	{name: "too many arguments", in: "*3\r\n", lim: Limits{MaxArgs: 2}, err: l7.ErrTooLong},
	{name: "too many inline arguments", in: "a b c\r\n", lim: Limits{MaxArgs: 2}, err: l7.ErrTooLong},
	{name: "bulk too long", in: "*2\r\n$3\r\nGET\r\n$5\r\n", lim: Limits{MaxBulk: 4}, err: l7.ErrTooLong},
	{name: "bulk at the limit", in: "*2\r\n$3\r\nGET\r\n$4\r\nabcd\r\n", lim: Limits{MaxBulk: 4}, want: frame(23, "GET", "", "abcd", 2)},
	{name: "count cannot fit the message", in: "*10\r\n", lim: Limits{MaxMessage: 64}, err: l7.ErrTooLong},
	{name: "bulk cannot fit the message", in: "*2\r\n$3\r\nGET\r\n$50\r\n", lim: Limits{MaxMessage: 64}, err: l7.ErrTooLong},
	{name: "inline line too long", in: "GET 12345\r\n", lim: Limits{MaxInline: 8}, err: l7.ErrTooLong},
	{name: "inline line at the limit", in: "GET 1234\r\n", lim: Limits{MaxInline: 8}, want: frame(10, "GET", "", "1234", 2)},
	{name: "inline line too long without LF", in: "GET 12345", lim: Limits{MaxInline: 8}, err: l7.ErrTooLong},
	{name: "inline line at the limit without LF", in: "GET 1234\r", lim: Limits{MaxInline: 8}, want: more(1)},
}

func TestParseRequest(t *testing.T) {
	for _, c := range requestCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirRequest) })
	}
}

var replyCases = []parseCase{
	// RESP2.
	{name: "simple string", in: "+OK\r\n", want: reply(5, 0, false)},
	{name: "empty simple string", in: "+\r\n", want: reply(3, 0, false)},
	{name: "error", in: "-ERR unknown command\r\n", want: reply(22, 0, true)},
	{name: "integer", in: ":1000\r\n", want: reply(7, 0, false)},
	{name: "negative integer", in: ":-1\r\n", want: reply(5, 0, false)},
	{name: "bulk", in: "$5\r\nhello\r\n", want: reply(11, 0, false)},
	{name: "empty bulk", in: "$0\r\n\r\n", want: reply(6, 0, false)},
	{name: "binary bulk", in: "$4\r\n\r\n\r\n\r\n", want: reply(10, 0, false)},
	{name: "null bulk", in: "$-1\r\n", want: reply(5, 0, false)},
	{name: "null array", in: "*-1\r\n", want: reply(5, 0, false)},
	{name: "empty array", in: "*0\r\n", want: reply(4, 0, false)},
	{name: "array", in: "*2\r\n$1\r\na\r\n:1\r\n", want: reply(15, 2, false)},
	{name: "nested arrays", in: "*2\r\n*1\r\n+a\r\n*0\r\n+next\r\n", want: reply(16, 2, false)},
	{name: "array holding an error", in: "*2\r\n-ERR x\r\n:1\r\n", want: reply(16, 2, false)},
	{name: "pipelined replies", in: "+OK\r\n+QUEUED\r\n", want: reply(5, 0, false)},

	// RESP3.
	{name: "null", in: "_\r\n", want: reply(3, 0, false)},
	{name: "double", in: ",3.14\r\n", want: reply(7, 0, false)},
	{name: "double inf", in: ",-inf\r\n", want: reply(7, 0, false)},
	{name: "boolean", in: "#t\r\n", want: reply(4, 0, false)},
	{name: "big number", in: "(3492890328409238509324850943850943825024385\r\n", want: reply(46, 0, false)},
	{name: "bulk error", in: "!21\r\nSYNTAX invalid syntax\r\n", want: reply(28, 0, true)},
	{name: "verbatim", in: "=15\r\ntxt:Some string\r\n", want: reply(22, 0, false)},
	{name: "map", in: "%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n", want: reply(20, 2, false)},
	{name: "set", in: "~2\r\n+a\r\n+b\r\n", want: reply(12, 2, false)},
	{name: "push is skipped", in: ">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n", want: skip(l7.DirReply, 24)},
	{name: "attribute is skipped", in: "|1\r\n+ttl\r\n:3\r\n+OK\r\n", want: skip(l7.DirReply, 14)},
	{name: "empty attribute is skipped", in: "|0\r\n+OK\r\n", want: skip(l7.DirReply, 4)},
	{name: "attribute inside an array", in: "*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", want: reply(24, 2, false)},
	{name: "attribute on a map value", in: "%1\r\n+k\r\n|1\r\n+a\r\n+b\r\n:1\r\n", want: reply(24, 1, false)},
	{name: "empty attribute inside an array", in: "*1\r\n|0\r\n:1\r\n", want: reply(12, 1, false)},
	{name: "push inside an array", in: "*1\r\n>1\r\n:1\r\n", want: reply(12, 1, false)},
	{name: "streamed string", in: "$?\r\n;4\r\nHell\r\n;1\r\no\r\n;0\r\n", want: reply(25, 0, false)},
	{name: "streamed array", in: "*?\r\n:1\r\n*?\r\n.\r\n.\r\n", want: reply(18, 2, false)},
	{name: "streamed map", in: "%?\r\n+a\r\n:1\r\n.\r\n", want: reply(15, 1, false)},
	{name: "streamed set holding a streamed string", in: "~?\r\n$?\r\n;1\r\na\r\n;0\r\n.\r\n", want: reply(22, 1, false)},
	{name: "error reply, RESP3", in: "-WRONGTYPE Operation against a key\r\n", want: reply(36, 0, true)},

	// Incomplete.
	{name: "nothing", in: "", want: more(minElem)},
	{name: "line without CRLF", in: "+OK", want: more(2)},
	{name: "line without LF", in: "+OK\r", want: more(1)},
	{name: "dollar", in: "$", want: more(3)},
	{name: "dollar minus", in: "$-", want: more(3)},
	{name: "bulk length digits", in: "$10", want: more(2 + 12)},
	{name: "known bulk length", in: "$1000\r\n", want: more(1002)},
	{name: "part of a bulk", in: "$5\r\nhe", want: more(5)},
	{name: "array header", in: "*3\r\n", want: more(3 * minElem)},
	{name: "array, one element read", in: "*3\r\n:1\r\n", want: more(2 * minElem)},
	{name: "bulk inside an array", in: "*2\r\n$1000\r\n", want: more(1002 + minElem)},
	{name: "map header digits", in: "%2", want: more(2 + 4*minElem)},
	{name: "attribute inside an array", in: "*2\r\n|1\r\n", want: more(4 * minElem)},
	{name: "streamed array", in: "*?\r\n:1\r\n", want: more(minElem)},
	{name: "streamed array end marker", in: "*?\r\n.", want: more(2)},
	{name: "chunk", in: "$?\r\n;5\r\nab", want: more(5)},

	// Malformed.
	{name: "unknown type", in: "?\r\n", err: l7.ErrMalformed},
	{name: "CR without LF", in: "+OK\rX", err: l7.ErrMalformed},
	{name: "LF inside a line", in: "+O\nK\r\n", err: l7.ErrMalformed},
	{name: "CR inside a line", in: "+O\rK\r\n", err: l7.ErrMalformed},
	{name: "integer not a number", in: ":1a\r\n", err: l7.ErrMalformed},
	{name: "empty integer", in: ":\r\n", err: l7.ErrMalformed},
	{name: "empty double", in: ",\r\n", err: l7.ErrMalformed},
	{name: "bad boolean", in: "#x\r\n", err: l7.ErrMalformed},
	{name: "null with content", in: "_x\r\n", err: l7.ErrMalformed},
	{name: "bulk without CRLF", in: "$3\r\nabcde", err: l7.ErrMalformed},
	{name: "bulk length -2", in: "$-2\r\n", err: l7.ErrMalformed},
	{name: "null bulk error", in: "!-1\r\n", err: l7.ErrMalformed},
	{name: "null map", in: "%-1\r\n", err: l7.ErrMalformed},
	{name: "verbatim too short", in: "=3\r\ntxt\r\n", err: l7.ErrMalformed},
	{name: "verbatim without format", in: "=5\r\ntxtab\r\n", err: l7.ErrMalformed},
	{name: "streamed push", in: ">?\r\n", err: l7.ErrMalformed},
	{name: "streamed attribute", in: "|?\r\n", err: l7.ErrMalformed},
	{name: "streamed bulk error", in: "!?\r\n", err: l7.ErrMalformed},
	{name: "end marker at top level", in: ".\r\n", err: l7.ErrMalformed},
	{name: "end marker in a counted array", in: "*2\r\n.\r\n", err: l7.ErrMalformed},
	{name: "chunk at top level", in: ";3\r\nabc\r\n", err: l7.ErrMalformed},
	{name: "not a chunk in a streamed string", in: "$?\r\n+x\r\n", err: l7.ErrMalformed},
	{name: "streamed map ends after a key", in: "%?\r\n+a\r\n.\r\n", err: l7.ErrMalformed},
	{name: "bad end marker", in: "*?\r\n.\rx", err: l7.ErrMalformed},

	// Over a limit.
	{name: "too deep", in: "*1\r\n*1\r\n*1\r\n:1\r\n", lim: Limits{MaxDepth: 2}, err: l7.ErrTooLong},
	{name: "deep enough", in: "*1\r\n*1\r\n*1\r\n:1\r\n", lim: Limits{MaxDepth: 3}, want: reply(16, 1, false)},
	{name: "streamed string counts as a level", in: "*1\r\n$?\r\n", lim: Limits{MaxDepth: 1}, err: l7.ErrTooLong},
	{name: "count beyond the message", in: "*100\r\n", lim: Limits{MaxMessage: 64}, err: l7.ErrTooLong},
	{name: "count cannot fit the message", in: "*20\r\n", lim: Limits{MaxMessage: 64}, err: l7.ErrTooLong},
	{name: "nested count cannot fit the message", in: "*2\r\n*18\r\n", lim: Limits{MaxMessage: 64}, err: l7.ErrTooLong},
	{name: "bulk cannot fit the message", in: "*1\r\n$60\r\n", lim: Limits{MaxMessage: 64}, err: l7.ErrTooLong},
	{name: "elements outgrow the message", in: "*3\r\n+" + strings.Repeat("a", 30) + "\r\n+" + strings.Repeat("a", 30) + "\r\n", lim: Limits{MaxMessage: 64}, err: l7.ErrTooLong},
	{name: "line too long", in: "+hello\r\n", lim: Limits{MaxInline: 4}, err: l7.ErrTooLong},
	{name: "line too long, incomplete", in: "+hello", lim: Limits{MaxInline: 4}, err: l7.ErrTooLong},
	{name: "line at the limit", in: "+hell\r\n", lim: Limits{MaxInline: 4}, want: reply(7, 0, false)},
	{name: "bulk too long", in: "$4\r\n", lim: Limits{MaxBulk: 3}, err: l7.ErrTooLong},
	{name: "chunk too long", in: "$?\r\n;4\r\n", lim: Limits{MaxBulk: 3}, err: l7.ErrTooLong},
	{name: "length overflows", in: "$99999999999999999999999999\r\n", err: l7.ErrTooLong},
}

func TestParseReply(t *testing.T) {
	for _, c := range replyCases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirReply) })
	}
}

// complete returns the inputs of cases whose first message is complete,
// cut to that message.
func complete(cases []parseCase) map[string][]byte {
	out := map[string][]byte{}
	for _, c := range cases {
		if c.err == nil && c.want.Op != l7.OpMore && c.lim == (Limits{}) {
			out[c.name] = []byte(c.in[:c.want.N])
		}
	}
	return out
}

// TestOneByteAtATime feeds each message one byte at a time to one parser:
// every answer before the last byte must be OpMore with a count that does
// not overshoot the message, and the last one must equal a fresh parse of
// the whole message.
func TestOneByteAtATime(t *testing.T) {
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		cases := requestCases
		if dir == l7.DirReply {
			cases = replyCases
		}
		for name, msg := range complete(cases) {
			t.Run(dir.String()+"/"+name, func(t *testing.T) {
				want := parse(t, NewParser(), dir, msg)
				l7test.Bytewise(t, parser(NewParser(), dir), msg, want)
			})
		}
	}
}

// corpus returns a stream of every complete message of the cases, and the
// recorded files of one direction, one after another.
func corpus(t *testing.T, dir l7.Dir) []byte {
	t.Helper()
	cases, ext := requestCases, ".req"
	if dir == l7.DirReply {
		cases, ext = replyCases, ".reply"
	}
	var b bytes.Buffer
	for _, c := range cases {
		if c.err == nil && c.want.Op != l7.OpMore && c.lim == (Limits{}) {
			b.WriteString(c.in[:c.want.N])
		}
	}
	for _, name := range l7test.Recordings(t, ext) {
		b.Write(l7test.ReadFile(t, name))
	}
	return b.Bytes()
}

// TestEverySplitPoint cuts a long pipeline in two at every offset: the
// answers must be those of the uncut stream.
func TestEverySplitPoint(t *testing.T) {
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		t.Run(dir.String(), func(t *testing.T) {
			data := corpus(t, dir)
			want := wholeStream(t, dir, data, Limits{})
			l7test.CheckCorpus(t, want, 50)
			l7test.EverySplit(t, func() l7test.ParseFunc[result] { return parser(NewParser(), dir) }, data, want, nil)
		})
	}
}

// TestRandomChunks feeds the corpus in random chunks, many times.
func TestRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		t.Run(dir.String(), func(t *testing.T) {
			data := corpus(t, dir)
			want := wholeStream(t, dir, data, Limits{})
			l7test.RandomChunks(t, rng, func() l7test.ParseFunc[result] { return parser(NewParser(), dir) }, data, want, 40, 200, nil)
		})
	}
}

// TestRecorded parses the bytes recorded from redis-cli 7.0 and
// redis-server 7.0 (see testdata/README.md): every request must get exactly
// one reply frame, as the proxy's reply counting assumes, and selected
// messages must carry the expected fields.
func TestRecorded(t *testing.T) {
	type pairCase struct {
		name    string
		req     []result // expected request answers, when given
		replies []result // expected reply answers, when given
	}
	const hello3 = "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"
	helloFrame := frame(len(hello3), "HELLO", "", "", 2)
	cases := []pairCase{
		{name: "set", req: []result{frame(27, "SET", "", "k", 3)}, replies: []result{reply(5, 0, false)}},
		{name: "get", req: []result{frame(20, "GET", "", "k", 2)}, replies: []result{reply(7, 0, false)}},
		{name: "config-get", req: []result{frame(40, "CONFIG", "GET", "maxmemory", 3)}, replies: []result{reply(26, 2, false)}},
		{name: "resp3-config-get-pattern", req: []result{helloFrame, frame(42, "CONFIG", "GET", "maxmemory*", 3)}},
		{name: "resp3-command-docs", req: []result{helloFrame, frame(36, "COMMAND", "DOCS", "get", 3)}},
		{name: "get-wrongtype", replies: []result{reply(68, 0, true)}},
		{name: "unknown-command", replies: []result{reply(63, 0, true)}},
		{name: "xread", req: []result{frame(60, "XREAD", "", "COUNT", 6)}, replies: []result{reply(64, 1, false)}},
		{name: "resp3-debug-protocol-attrib"},
		{name: "resp3-debug-protocol-push"},
		{name: "resp3-tracking-invalidate"},
		{name: "pipe-inline"},
		{name: "pipe-inline-quoted-multi"},
		{name: "pipe-resp-16"},
	}
	named := map[string]bool{}
	for _, c := range cases {
		named[c.name] = true
	}
	for _, name := range l7test.Recordings(t, ".req") {
		base := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), "redis-cli-7.0-"), ".req")
		if !named[base] {
			cases = append(cases, pairCase{name: base})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := l7test.ReadFile(t, filepath.Join("testdata", "redis-cli-7.0-"+c.name+".req"))
			rep := l7test.ReadFile(t, filepath.Join("testdata", "redis-server-7.0-"+c.name+".reply"))
			reqs := wholeStream(t, l7.DirRequest, req, Limits{})
			reps := wholeStream(t, l7.DirReply, rep, Limits{})
			for _, rs := range [][]result{reqs, reps} {
				if last := rs[len(rs)-1]; last.Err != nil || last.Op != l7.OpMore {
					t.Fatalf("recording does not end on a message boundary: %v", last)
				}
			}
			count := func(rs []result) (n int) {
				for _, r := range rs {
					if r.Op == l7.OpFrame {
						n++
					}
				}
				return n
			}
			if nq, np := count(reqs), count(reps); nq != np || nq == 0 {
				t.Fatalf("%d request frames, %d reply frames:\n%v\n%v", nq, np, reqs, reps)
			}
			if c.req != nil && !slices.Equal(reqs[:len(reqs)-1], c.req) {
				t.Fatalf("requests:\n%s", l7test.Diff(reqs[:len(reqs)-1], c.req))
			}
			if c.replies != nil && !slices.Equal(reps[:len(reps)-1], c.replies) {
				t.Fatalf("replies:\n%s", l7test.Diff(reps[:len(reps)-1], c.replies))
			}
		})
	}
}

// TestRecordedDetails checks what the recordings show of the protocol's
// corners: RESP3 attributes and pushes are skipped between replies, the
// inline pipeline's empty line is skipped, quoted inline keys are views.
func TestRecordedDetails(t *testing.T) {
	ops := func(rs []result) string {
		var b strings.Builder
		for _, r := range rs[:len(rs)-1] {
			b.WriteString(r.Op.String()[:1])
		}
		return b.String()
	}
	tests := []struct {
		file string
		dir  l7.Dir
		want string // one letter per answer: f(rame), s(kip)
	}{
		{"redis-server-7.0-resp3-debug-protocol-attrib.reply", l7.DirReply, "fsf"},
		{"redis-server-7.0-resp3-debug-protocol-push.reply", l7.DirReply, "fsf"},
		{"redis-server-7.0-resp3-tracking-invalidate.reply", l7.DirReply, "ffffsfff"},
		{"redis-cli-7.0-pipe-inline.req", l7.DirRequest, "ffffffsf"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rs := wholeStream(t, tt.dir, l7test.ReadFile(t, filepath.Join("testdata", tt.file)), Limits{})
			if got := ops(rs); got != tt.want {
				t.Fatalf("answers %s, want %s: %v", got, tt.want, rs)
			}
		})
	}
	rs := wholeStream(t, l7.DirRequest, l7test.ReadFile(t, "testdata/redis-cli-7.0-pipe-inline-quoted-multi.req"), Limits{})
	want := []result{frame(28, "SET", "", "my key", 3), frame(14, "GET", "", "my key", 2)}
	if !slices.Equal(rs[:2], want) {
		t.Fatalf("quoted inline:\n%s", l7test.Diff(rs[:2], want))
	}
}

// TestParserKeepsItsPlace shows that after OpMore a parser resumes where it
// stopped, and starts over when handed a shorter input.
func TestParserKeepsItsPlace(t *testing.T) {
	msg := []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n")
	p := NewParser()
	if r := parse(t, p, l7.DirRequest, msg[:20]); r.Op != l7.OpMore {
		t.Fatalf("prefix: %v", r)
	}
	// A shorter input than the last one is a new message.
	if r := parse(t, p, l7.DirRequest, []byte("*1\r\n$4\r\nPING\r\n")); r != frame(14, "PING", "", "", 1) {
		t.Fatalf("after a shorter input: %v", r)
	}
	// Directions keep separate places.
	rep := []byte("*2\r\n:1\r\n:2\r\n")
	if r := parse(t, p, l7.DirRequest, msg[:20]); r.Op != l7.OpMore {
		t.Fatalf("prefix: %v", r)
	}
	if r := parse(t, p, l7.DirReply, rep[:6]); r.Op != l7.OpMore {
		t.Fatalf("reply prefix: %v", r)
	}
	if r := parse(t, p, l7.DirRequest, msg); r != frame(len(msg), "SET", "", "k", 3) {
		t.Fatalf("request: %v", r)
	}
	if r := parse(t, p, l7.DirReply, rep); r != reply(len(rep), 2, false) {
		t.Fatalf("reply: %v", r)
	}
}

// TestErrorsReset checks that a parser can be used again after an error
// (the proxy closes the connection, but the parser must not carry state).
func TestErrorsReset(t *testing.T) {
	p := NewParser()
	if r := parse(t, p, l7.DirReply, []byte("*2\r\n?")); r.Err == nil {
		t.Fatalf("want an error, got %v", r)
	}
	if r := parse(t, p, l7.DirReply, []byte("+OK\r\n")); r != reply(5, 0, false) {
		t.Fatalf("after an error: %v", r)
	}
}

func TestParseNilFrameAndBadDir(t *testing.T) {
	p := NewParser()
	if op, n, err := p.Parse(l7.DirRequest, []byte("PING\r\n"), nil); op != l7.OpFrame || n != 6 || err != nil {
		t.Fatalf("nil frame: %v %d %v", op, n, err)
	}
	if _, _, err := p.Parse(l7.Dir(7), []byte("PING\r\n"), &l7.Frame{}); !errors.Is(err, l7.ErrMalformed) {
		t.Fatalf("bad direction: %v", err)
	}
	var zero Parser
	if r := parse(t, &zero, l7.DirReply, []byte("+OK\r\n")); r != reply(5, 0, false) {
		t.Fatalf("zero Parser: %v", r)
	}
	if zero.Limits() != DefaultLimits() {
		t.Fatalf("zero Parser limits %+v", zero.Limits())
	}
}

func TestFrameViewsCannotGrowIntoTheInput(t *testing.T) {
	in := []byte("*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n")
	var f l7.Frame
	if _, _, err := NewParser().Parse(l7.DirRequest, in, &f); err != nil {
		t.Fatal(err)
	}
	_ = append(f.Verb, 'X')
	_ = append(f.Resource, 'X')
	if string(in) != "*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n" {
		t.Fatalf("appending to a view changed the input: %q", in)
	}
}

func TestLimits(t *testing.T) {
	if err := (Limits{}).Validate(); err != nil {
		t.Fatalf("zero limits: %v", err)
	}
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatalf("default limits: %v", err)
	}
	bad := Limits{MaxBulk: -1, MaxArgs: CapMaxArgs + 1, MaxInline: 1, MaxDepth: CapMaxDepth + 1, MaxMessage: CapMaxMessage + 1}
	err := bad.Validate()
	for _, field := range []string{"MaxBulk", "MaxArgs", "MaxDepth", "MaxMessage"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Fatalf("Validate(%+v) = %v, want it to name %s", bad, err, field)
		}
	}
	if strings.Contains(err.Error(), "MaxInline") {
		t.Fatalf("Validate names a valid field: %v", err)
	}
	got := NewParserWithLimits(bad).Limits()
	want := Limits{MaxBulk: DefaultMaxBulk, MaxArgs: CapMaxArgs, MaxInline: 1, MaxDepth: CapMaxDepth, MaxMessage: CapMaxMessage}
	if got != want {
		t.Fatalf("NewParserWithLimits(%+v).Limits() = %+v, want %+v", bad, got, want)
	}
	if got := NewParser().Limits(); got != DefaultLimits() {
		t.Fatalf("NewParser().Limits() = %+v", got)
	}
}

func TestProtocol(t *testing.T) {
	pr := Protocol()
	if pr.Name != "redis" || pr.New == nil || pr.Sniff == nil || pr.Deny == nil {
		t.Fatalf("Protocol() = %+v", pr)
	}
	if _, ok := pr.New().(*Parser); !ok {
		t.Fatalf("New() returned %T", pr.New())
	}
	if a, b := pr.New(), pr.New(); a == b {
		t.Fatal("New() returned the same parser twice")
	}
}

func TestDenyGolden(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name   string
		f      *l7.Frame
		reason string
	}{
		{"command", &l7.Frame{Verb: []byte("FLUSHALL")}, ""},
		{"command with reason", &l7.Frame{Verb: []byte("FlushAll")}, "no rule allows it"},
		{"sub-command", &l7.Frame{Verb: []byte("CONFIG"), Sub: []byte("SET"), Resource: []byte("requirepass")}, "protect mode"},
		{"no command", &l7.Frame{}, "malformed"},
		{"nil frame", nil, ""},
		{"control bytes stripped", &l7.Frame{Verb: []byte("GET\r\n+OK\r\n")}, "a\r\nb\x00c\x7fd\xffe"},
		{"long texts bounded", &l7.Frame{Verb: []byte(long), Sub: []byte(long)}, long},
		{"blank reason", &l7.Frame{Verb: []byte("DEL")}, " \r\n "},
		{"unprintable command", &l7.Frame{Verb: []byte("\x00\x01")}, ""},
	}
	var golden bytes.Buffer
	for _, tt := range tests {
		out := Deny(nil, tt.f, tt.reason)
		if !bytes.HasPrefix(out, []byte("-ERR bulkhead: ")) || !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Errorf("%s: %q is not a Redis error line", tt.name, out)
		}
		if bytes.ContainsAny(out[:len(out)-2], "\r\n") || len(out) > maxDenyReply {
			t.Errorf("%s: %q holds CR/LF or is too long", tt.name, out)
		}
		// The reply must be one complete RESP error for the reply parser.
		if r := parse(t, NewParser(), l7.DirReply, out); r != reply(len(out), 0, true) {
			t.Errorf("%s: parsed as %v", tt.name, r)
		}
		prefix := []byte("prefix")
		if got := Deny(prefix, tt.f, tt.reason); string(got) != "prefix"+string(out) {
			t.Errorf("%s: Deny does not append: %q", tt.name, got)
		}
		fmt.Fprintf(&golden, "%s: %s\n", tt.name, strconv.Quote(string(out)))
	}
	path := filepath.Join("testdata", "deny.golden")
	if *update {
		if err := os.WriteFile(path, golden.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(golden.Bytes(), want) {
		t.Fatalf("Deny output differs from %s (go test -update to accept):\n got:\n%s\nwant:\n%s", path, golden.Bytes(), want)
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"multibulk", "*1\r\n$4\r\nPING\r\n", true},
		{"multibulk, many arguments", "*1234567\r\n$3\r\nDEL\r\n", true},
		{"multibulk, head only", "*3\r\n$3", true},
		{"multibulk cut before the bulk", "*3\r\n", false},
		{"multibulk too many digits", "*12345678\r\n$3\r\n", false},
		{"multibulk zero", "*0\r\n$1\r\n", false},
		{"multibulk no digits", "*\r\n$1\r\n", false},
		{"multibulk not a bulk", "*1\r\n+OK\r\n", false},
		{"inline ping", "PING\r\n", true},
		{"inline ping lower case", "ping\r\n", true},
		{"inline hello", "HELLO 3\r\n", true},
		{"inline auth", "auth secret\r\n", true},
		{"inline info tab", "INFO\tserver\n", true},
		{"inline GET", "GET foo\r\n", true},
		{"inline Set", "Set k v\r\n", true},
		{"memcached get", "get foo\r\n", false},
		{"memcached set", "set k 0 0 1\r\nx\r\n", false},
		{"HTTP GET", "GET / HTTP/1.1\r\nHost: x\r\n", false},
		{"HTTP POST", "POST /x HTTP/1.1\r\n", false},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
		{"TLS client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", false},
		{"unknown word", "HELLOWORLD\r\n", false},
		{"name without separator yet", "PING", false},
		{"empty", "", false},
		{"leading space", " PING\r\n", false},
		{"long word", "PSUBSCRIBEX\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sniff([]byte(tt.in)); got != tt.want {
				t.Fatalf("Sniff(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	for _, name := range l7test.Recordings(t, ".req") {
		if !Sniff(l7test.ReadFile(t, name)) {
			t.Errorf("Sniff does not recognise %s", name)
		}
	}
}

func TestZeroAllocations(t *testing.T) {
	requests := map[string]string{
		"multibulk":  "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n",
		"container":  "*3\r\n$6\r\nconfig\r\n$3\r\nget\r\n$9\r\nmaxmemory\r\n",
		"eval":       "*4\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n1\r\n$3\r\nkey\r\n",
		"inline":     "SET \"my key\" 'v a l'\r\n",
		"skip":       "*0\r\n",
		"incomplete": "*2\r\n$3\r\nGET\r\n$1000\r\n",
	}
	replies := map[string]string{
		"hello3":     string(l7test.ReadFile(t, "testdata/redis-server-7.0-resp3-hello3.reply")),
		"attribute":  "|1\r\n+ttl\r\n:3\r\n",
		"streamed":   "*?\r\n$?\r\n;1\r\na\r\n;0\r\n%?\r\n+a\r\n:1\r\n.\r\n.\r\n",
		"incomplete": "*3\r\n*2\r\n$10\r\nabc",
	}
	p := NewParser()
	var f l7.Frame
	for dir, set := range map[l7.Dir]map[string]string{l7.DirRequest: requests, l7.DirReply: replies} {
		for name, in := range set {
			data := []byte(in)
			if n := testing.AllocsPerRun(100, func() {
				// Prefix then whole: covers resuming after OpMore.
				p.Parse(dir, data[:len(data)/2], &f)
				p.Parse(dir, data, &f)
			}); n != 0 {
				t.Errorf("%v %s: %v allocations per Parse, want 0", dir, name, n)
			}
		}
	}
	ping := []byte("PING\r\n")
	if n := testing.AllocsPerRun(100, func() { p.Parse(l7.DirRequest, ping, nil) }); n != 0 {
		t.Errorf("Parse with a nil frame: %v allocations", n)
	}
	buf := make([]byte, 0, 512)
	deny := &l7.Frame{Verb: []byte("CONFIG"), Sub: []byte("SET")}
	if n := testing.AllocsPerRun(100, func() { buf = Deny(buf[:0], deny, "no rule allows it") }); n != 0 {
		t.Errorf("Deny: %v allocations", n)
	}
	sniffed := []byte("GET foo\r\n")
	if n := testing.AllocsPerRun(100, func() { Sniff(sniffed) }); n != 0 {
		t.Errorf("Sniff: %v allocations", n)
	}
}

func benchStream(b *testing.B, dir l7.Dir, data []byte, frames int) {
	b.Helper()
	p := NewParser()
	var f l7.Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		got := 0
		for rest := data; len(rest) > 0; {
			op, n, err := p.Parse(dir, rest, &f)
			if err != nil || op == l7.OpMore {
				b.Fatalf("%v %d %v", op, n, err)
			}
			if op == l7.OpFrame {
				got++
			}
			rest = rest[n:]
		}
		if got != frames {
			b.Fatalf("%d frames, want %d", got, frames)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/msg")
}

func command(args ...string) []byte {
	out := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		out = fmt.Appendf(out, "$%d\r\n%s\r\n", len(a), a)
	}
	return out
}

func BenchmarkParseRequest(b *testing.B) {
	var pipeline []byte
	for i := range 8 {
		pipeline = append(pipeline, command("SET", fmt.Sprintf("key:%d", i), "value")...)
		pipeline = append(pipeline, command("GET", fmt.Sprintf("key:%d", i))...)
	}
	b.Run("get", func(b *testing.B) { benchStream(b, l7.DirRequest, command("GET", "key:1"), 1) })
	b.Run("set-1KiB", func(b *testing.B) {
		benchStream(b, l7.DirRequest, command("SET", "key:1", strings.Repeat("v", 1024)), 1)
	})
	b.Run("pipeline-16", func(b *testing.B) { benchStream(b, l7.DirRequest, pipeline, 16) })
	b.Run("inline", func(b *testing.B) { benchStream(b, l7.DirRequest, []byte("GET key:1\r\n"), 1) })
}

func BenchmarkParseReply(b *testing.B) {
	var data []byte
	frames := 0
	for _, name := range l7test.Recordings(b, ".reply") {
		rec := l7test.ReadFile(b, name)
		data = append(data, rec...)
		for _, r := range wholeStream(b, l7.DirReply, rec, Limits{}) {
			if r.Op == l7.OpFrame {
				frames++
			}
		}
	}
	b.Run("stream", func(b *testing.B) { benchStream(b, l7.DirReply, data, frames) })
	b.Run("bulk-1KiB", func(b *testing.B) {
		benchStream(b, l7.DirReply, fmt.Appendf(nil, "$1024\r\n%s\r\n", strings.Repeat("v", 1024)), 1)
	})
	// A 20,000-element array arriving in 1 KiB reads: the parser resumes
	// where it stopped instead of rescanning the elements it has seen.
	b.Run("array-in-1KiB-reads", func(b *testing.B) {
		big := fmt.Appendf(nil, "*%d\r\n", 20000)
		for i := range 20000 {
			big = fmt.Appendf(big, "$5\r\nv%04d\r\n", i%10000)
		}
		p := NewParser()
		var f l7.Frame
		b.ReportAllocs()
		b.SetBytes(int64(len(big)))
		for b.Loop() {
			for end := 1024; ; end = min(end+1024, len(big)) {
				op, _, err := p.Parse(l7.DirReply, big[:end], &f)
				if err != nil {
					b.Fatal(err)
				}
				if op == l7.OpFrame {
					break
				}
			}
		}
	})
}

func BenchmarkDeny(b *testing.B) {
	buf := make([]byte, 0, 512)
	f := &l7.Frame{Verb: []byte("FLUSHALL")}
	b.ReportAllocs()
	for b.Loop() {
		buf = Deny(buf[:0], f, "no rule allows it")
	}
	b.SetBytes(int64(len(buf)))
}

// TestStackGrowsOnDemand: the reply stack is allocated lazily and grows up
// to MaxDepth; once grown, deep replies allocate nothing, and a reply one
// level too deep is still refused.
func TestStackGrowsOnDemand(t *testing.T) {
	nested := func(depth int) []byte {
		return []byte(strings.Repeat("*1\r\n", depth) + ":1\r\n")
	}
	p := NewParserWithLimits(Limits{MaxDepth: 20})
	if p.stack != nil {
		t.Fatalf("new parser holds a stack of %d levels", len(p.stack))
	}
	var f l7.Frame
	if op, n, err := p.Parse(l7.DirReply, []byte("$-1\r\n"), &f); op != l7.OpFrame || n != 5 || err != nil {
		t.Fatalf("null bulk: %v %d %v", op, n, err)
	}
	if p.stack != nil {
		t.Fatalf("a flat reply allocated a stack of %d levels", len(p.stack))
	}
	for _, depth := range []int{1, 5, 20} {
		data := nested(depth)
		if op, n, err := p.Parse(l7.DirReply, data, &f); op != l7.OpFrame || n != len(data) || err != nil {
			t.Fatalf("depth %d: %v %d %v", depth, op, n, err)
		}
		if len(p.stack) < depth || len(p.stack) > 20 {
			t.Fatalf("depth %d: stack of %d levels", depth, len(p.stack))
		}
	}
	deep := nested(20)
	if n := testing.AllocsPerRun(100, func() { p.Parse(l7.DirReply, deep, &f) }); n != 0 {
		t.Errorf("depth 20 after growing: %v allocations per Parse, want 0", n)
	}
	if _, _, err := p.Parse(l7.DirReply, nested(21), &f); !errors.Is(err, l7.ErrMalformed) && !errors.Is(err, l7.ErrTooLong) {
		t.Errorf("depth 21 with MaxDepth 20: err %v, want a limit error", err)
	}
}
