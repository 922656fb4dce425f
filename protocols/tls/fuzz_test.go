package tls

import (
	"errors"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// FuzzParseRequest checks, for any input read as a client's stream: no
// panic; every answer within bounds (checkAnswer); the same answers however
// the input is split (checkSplits); and Sniff recognises every prefix of
// at least three bytes of what the parser frames.
func FuzzParseRequest(f *testing.F) {
	for _, c := range requestCases {
		f.Add(c.in)
	}
	for _, name := range l7test.Recordings(f, ".req") {
		f.Add(l7test.ReadFile(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 32<<10 {
			t.Skip("longer inputs reach nothing new")
		}
		whole := wholeStream(t, l7.DirRequest, data)
		checkSplits(t, data, whole)
		if whole[0].Op == l7.OpFrame {
			for k := 3; k <= whole[0].N; k++ {
				if !Sniff(data[:k]) {
					t.Fatalf("the parser frames %q but Sniff refuses its first %d bytes", data, k)
				}
			}
		}
	})
}

// checkSplits feeds data to one parser growing one step at a time, as the
// proxy does, and compares with whole, the answers to the whole input:
// before the ClientHello is complete every answer is OpMore with a count
// that does not overshoot its end (or, when the whole input ends in an
// error, possibly that same error early); when it is complete the answer is
// the same, and after it the parser passes.
func checkSplits(t *testing.T, data []byte, whole []result) {
	t.Helper()
	p := NewParser()
	step := 1 + len(data)/512 // bounds the work on large inputs
	w := whole[0]
	framed := w.Err == nil && w.Op == l7.OpFrame
	end := len(data)
	if framed {
		end = w.N
	}
	for k := 0; ; k = min(k+step, end) {
		got := parse(t, p, l7.DirRequest, data[:k])
		switch {
		case k == end:
			if got != w {
				t.Fatalf("%q: whole %v, fed in steps %v", data, w, got)
			}
			if framed {
				if got := parse(t, p, l7.DirRequest, data[end:]); got != pass() {
					t.Fatalf("%q: after the frame %v, want pass", data, got)
				}
			}
			return
		case got.Err != nil:
			if got.Err != w.Err {
				t.Fatalf("%q, prefix of %d: %v, but the whole input gives %v", data, k, got, w)
			}
			return
		case got.Op != l7.OpMore:
			t.Fatalf("%q, prefix of %d: %v before the message's end (%d)", data, k, got, end)
		case framed && k+got.N > end:
			t.Fatalf("%q, prefix of %d: more %d overshoots the end (%d)", data, k, got.N, end)
		}
	}
}

// FuzzClientHello builds a ClientHello around a fuzzed server name and
// ALPN protocol, cuts it into records of fuzzed sizes, and checks that the
// parser reports exactly the name (as refName reads it) and the protocol,
// or refuses the name with refName's error.
func FuzzClientHello(f *testing.F) {
	f.Add("api.example.test", "h2", []byte{})
	f.Add("API.Example.Test.", "http/1.1", []byte{0, 1, 2, 3})
	f.Add("a..b", "x", []byte{50})
	f.Add(longestName+".", alpn255, []byte{60, 7})
	f.Add("x_y-z.0", "\x00", []byte{255, 255})
	f.Fuzz(func(t *testing.T, sni, alpn string, cuts []byte) {
		if len(sni) == 0 || len(sni) > 1024 || len(alpn) == 0 || len(alpn) > 255 {
			t.Skip("not encodable in the extensions")
		}
		msg := handshake(typeClientHello, body(greaseA, sniExt(sni), versionsExt, alpnExt(alpn, "h2"), paddingExt))
		sizes := make([]int, len(cuts))
		for i, c := range cuts {
			sizes[i] = 1 + int(c)
		}
		data := records(msg, sizes...)
		got := wholeStream(t, l7.DirRequest, data)[0]
		want, werr := refName(sni)
		switch {
		case werr != nil:
			if !errors.Is(got.Err, werr) {
				t.Fatalf("name %q: %v, want error %v", sni, got, werr)
			}
		case got != frame(len(data), want, alpn, 0x0303):
			t.Fatalf("name %q alpn %q in records %v: %v, want %q", sni, alpn, sizes, got, want)
		}
	})
}

// refName is how a server name should read, written independently of
// hostName with the strings package.
func refName(s string) (string, error) {
	if len(s) > MaxServerName+1 {
		return "", l7.ErrTooLong
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", l7.ErrMalformed
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 ||
			strings.TrimLeft(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return "", l7.ErrMalformed
		}
	}
	if len(s) > MaxServerName {
		return "", l7.ErrTooLong
	}
	return strings.ToLower(s), nil
}

// FuzzParseReply checks that the reply direction never panics and either
// passes, asks for more or refuses, the same way for every prefix.
func FuzzParseReply(f *testing.F) {
	for _, c := range replyCases {
		f.Add(c.in)
	}
	for _, name := range l7test.Recordings(f, ".reply") {
		f.Add(l7test.ReadFile(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w := parse(t, NewParser(), l7.DirReply, data)
		for k := 0; k < len(data) && k < 4; k++ {
			got := parse(t, NewParser(), l7.DirReply, data[:k])
			if got.Op == l7.OpPass && w.Op != l7.OpPass || got.Err != nil && got.Err != w.Err {
				t.Fatalf("%q: prefix of %d gives %v, the whole %v", data, k, got, w)
			}
		}
	})
}

// FuzzDeny checks that any frame gives one fatal access_denied alert
// record of DenyLen bytes with a version of 3.0 to 3.3.
func FuzzDeny(f *testing.F) {
	f.Add(0x0303, "api.example.test", "no rule allows it")
	f.Add(0x0301, "", "")
	f.Add(-1, "a\r\nb", "a\r\nb")
	f.Add(1<<40, "x", "x")
	f.Fuzz(func(t *testing.T, args int, res, reason string) {
		out := Deny(nil, &l7.Frame{Verb: verb, Resource: []byte(res), Args: args}, reason)
		if len(out) != DenyLen || out[0] != typeAlert || out[1] != 3 || out[2] > 3 ||
			out[3] != 0 || out[4] != 2 || out[5] != alertLevelFatal || out[6] != alertAccessDenied {
			t.Fatalf("Deny = %x", out)
		}
		if v := int(out[1])<<8 | int(out[2]); args >= 0x0300 && args <= 0x0303 && v != args {
			t.Fatalf("Deny = %x for legacy_version %#x", out, args)
		}
	})
}
