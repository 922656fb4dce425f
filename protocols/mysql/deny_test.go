package mysql

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// maxDenyPacket bounds Deny's output.
const maxDenyPacket = headerLen + 1 + 2 + 6 + len("bulkhead: ") + maxDenyVerb + len(" on database '") + maxDenyResource +
	len("' and others denied by policy (") + maxDenyReason + 1

func TestDenyGolden(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name   string
		f      *l7.Frame
		reason string
	}{
		{"statement with a table", &l7.Frame{Verb: []byte("SELECT"), Resource: []byte("shop.items"), Aux: []byte("shop")}, "no rule allows it"},
		{"several tables", &l7.Frame{Verb: []byte("MULTI"), Sub: []byte("SELECT,DROP"), Resource: []byte("a"), More: [l7.MaxResources - 1][]byte{[]byte("b")}, NMore: 1}, ""},
		{"statement without tables", &l7.Frame{Verb: []byte("SET")}, "protect mode"},
		{"use", &l7.Frame{Verb: []byte("USE"), Resource: []byte("secret"), Aux: []byte("secret")}, ""},
		{"change user", &l7.Frame{Verb: []byte("CHANGE_USER"), Resource: []byte("root")}, ""},
		{"ssl", &l7.Frame{Verb: []byte("SSL"), NoReply: true}, ""},
		{"compression", &l7.Frame{Verb: []byte("COMPRESS"), NoReply: true}, ""},
		{"no reply expected", &l7.Frame{Verb: []byte("STMT_CLOSE"), NoReply: true}, ""},
		{"nil frame", nil, "malformed"},
		{"quotes and control bytes", &l7.Frame{Verb: []byte("SELECT"), Resource: []byte("a'b\r\nc\x00d\xff")}, "x'\ny"},
		{"long texts bounded", &l7.Frame{Verb: []byte(long), Resource: []byte(long)}, long},
	}
	var golden bytes.Buffer
	for _, tt := range tests {
		out := Deny(nil, tt.f, tt.reason)
		fmt.Fprintf(&golden, "%s: %s\n", tt.name, strconv.Quote(string(out)))
		if tt.f != nil && tt.f.NoReply && tt.name == "no reply expected" {
			if len(out) != 0 {
				t.Errorf("%s: %q", tt.name, out)
			}
			continue
		}
		if len(out) > maxDenyPacket {
			t.Errorf("%s: %d bytes", tt.name, len(out))
		}
		if l, seq := header(out); l != len(out)-headerLen || out[headerLen] != markERR || (seq != 1 && seq != 2) {
			t.Errorf("%s: %q is not one ERR packet", tt.name, out)
		}
		if !bytes.Contains(out, []byte("#42000bulkhead: ")) || bytes.ContainsAny(out[headerLen+3:], "\r\n\x00") {
			t.Errorf("%s: %q", tt.name, out)
		}
		// A parser waiting for a command's reply frames it as the final
		// error reply.
		p := session(t, mariaCaps, 0, "")
		if r := parse(t, p, l7.DirRequest, query("SELECT 1")); r.Op != l7.OpFrame {
			t.Fatal(r)
		}
		if r := parse(t, p, l7.DirReply, out); r.Op != l7.OpFrame || !r.FErr || r.Partial || r.N != len(out) {
			t.Errorf("%s: parsed as %v", tt.name, r)
		}
		if got := Deny([]byte("prefix"), tt.f, tt.reason); string(got) != "prefix"+string(out) {
			t.Errorf("%s: Deny does not append: %q", tt.name, got)
		}
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
	yes := map[string][]byte{
		"mariadb 10.11 greeting": greetingPkt(0xffffffff, 0),
		"mysql 8.0 greeting": pkt(0, 10, "8.0.36\x00", le32b(9), "abcdefgh", 0, 0xff, 0xff, 0xff, 2, 0, 0xff, 0xdf, 21,
			make([]byte, 10), "ijklmnopqrst\x00", "caching_sha2_password\x00"),
	}
	for _, rec := range recordings(t) {
		yes["recorded "+rec.name] = rec.rep
	}
	for name, in := range yes {
		if !Sniff(in) {
			t.Errorf("%s: not recognised", name)
		}
	}
	no := map[string][]byte{
		"empty":                 nil,
		"short":                 greetingPkt(0xffffffff, 0)[:6],
		"version cut":           greetingPkt(0xffffffff, 0)[:10],
		"redis multibulk":       []byte("*1\r\n$4\r\nPING\r\n"),
		"redis inline":          []byte("PING\r\n"),
		"http request":          []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"http response":         []byte("HTTP/1.1 200 OK\r\n"),
		"tls client hello":      {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03},
		"memcached":             []byte("get key\r\n"),
		"postgres startup":      {0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f},
		"postgres ssl request":  {0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f},
		"ssh banner":            []byte("SSH-2.0-OpenSSH_9.2\r\n"),
		"smtp banner":           []byte("220 mail.example ESMTP\r\n"),
		"error before greeting": pkt(0, 0xff, 0x10, 0x04, "Too many connections"),
		"client packet":         query("SELECT 1"),
		"sequence 1":            append(append([]byte{}, greetingPkt(0xffffffff, 0)[:3]...), append([]byte{1}, greetingPkt(0xffffffff, 0)[4:]...)...),
		"control in version":    pkt(0, 10, "8.0\x01\x00", make([]byte, 30)),
		"version not a number":  pkt(0, 10, "x8.0\x00", make([]byte, 30)),
		"huge length":           {0xff, 0xff, 0xff, 0, 10, '8', '.', '0', 0},
	}
	for name, in := range no {
		if Sniff(in) {
			t.Errorf("%s: recognised as MySQL", name)
		}
	}
}
