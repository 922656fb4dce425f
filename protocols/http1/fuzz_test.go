package http1

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// FuzzParseRequest checks, for any input read as a request stream: no
// panic; every answer within bounds (checkAnswer); request fields in their
// normal form; the same frames and final answer however the input is cut
// (checkSplits).
func FuzzParseRequest(f *testing.F) {
	for _, c := range requestCases {
		f.Add([]byte(c.in))
	}
	for _, c := range streamCases {
		if c.dir == l7.DirRequest {
			f.Add([]byte(c.in))
		}
	}
	for _, name := range recordings(f) {
		f.Add(l7test.ReadFile(f, "testdata/curl-7.88-"+name+".req"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			t.Skip("large inputs reach nothing small ones do not")
		}
		p := NewParser()
		rs := whole(t, p, l7.DirRequest, data)
		for _, r := range rs {
			if r.Op == l7.OpFrame {
				checkFields(t, r)
			}
		}
		checkSplits(t, nil, l7.DirRequest, data, canon(rs))
	})
}

// FuzzParseReply is FuzzParseRequest for replies: reqs is fed first as the
// requests the replies answer.
func FuzzParseReply(f *testing.F) {
	for _, c := range replyCases {
		f.Add([]byte(c.ctx), []byte(c.in))
	}
	for _, c := range streamCases {
		if c.dir == l7.DirReply {
			f.Add([]byte(c.ctx), []byte(c.in))
		}
	}
	for _, name := range recordings(f) {
		f.Add(l7test.ReadFile(f, "testdata/curl-7.88-"+name+".req"), l7test.ReadFile(f, "testdata/nginx-1.22-"+name+".reply"))
	}
	f.Fuzz(func(t *testing.T, reqs, data []byte) {
		if len(reqs)+len(data) > 8<<10 {
			t.Skip("large inputs reach nothing small ones do not")
		}
		p := NewParser()
		whole(t, p, l7.DirRequest, reqs)
		checkSplits(t, reqs, l7.DirReply, data, canon(whole(t, p, l7.DirReply, data)))
	})
}

// checkSplits parses data again with fresh parsers (fed reqs first, for
// replies), cut in two at several places and fed one byte at a time, and
// compares with want, the canonical answers to the whole input.
func checkSplits(t *testing.T, reqs []byte, dir l7.Dir, data []byte, want []result) {
	t.Helper()
	fresh := func() *Parser {
		p := NewParser()
		if reqs != nil {
			whole(t, p, l7.DirRequest, reqs)
		}
		return p
	}
	step := 1 + len(data)/32 // bounds the work on large inputs
	for s := 1; s < len(data); s += step {
		got := canon(stream(t, fresh(), dir, data, []int{s, len(data)}))
		if !slices.Equal(got, want) {
			t.Fatalf("%q cut at %d:\n%s", data, s, l7test.Diff(got, want))
		}
	}
	if len(data) > 0 && len(data) <= 1024 {
		ends := make([]int, len(data))
		for i := range ends {
			ends[i] = i + 1
		}
		got := canon(stream(t, fresh(), dir, data, ends))
		if !slices.Equal(got, want) {
			t.Fatalf("%q one byte at a time:\n%s", data, l7test.Diff(got, want))
		}
	}
}

// checkFields checks a request frame's fields: Resource in normal form
// (a fixed point of the normalisation), Aux lower case without port.
func checkFields(t *testing.T, r result) {
	t.Helper()
	if r.Verb == "" || !isToken([]byte(r.Verb)) {
		t.Fatalf("verb %q", r.Verb)
	}
	switch {
	case r.Verb == "CONNECT":
		if !strings.HasPrefix(r.Resource, r.Aux+":") {
			t.Fatalf("CONNECT resource %q, aux %q", r.Resource, r.Aux)
		}
	case r.Resource == "*":
	default:
		again, err := AppendNormalizedPath(nil, []byte(r.Resource))
		if err != nil || string(again) != r.Resource {
			t.Fatalf("resource %q is not in normal form: %q, %v", r.Resource, again, err)
		}
	}
	if strings.ToLower(r.Aux) != r.Aux || (strings.Contains(r.Aux, ":") && !strings.HasPrefix(r.Aux, "[")) ||
		strings.HasSuffix(r.Aux, ".") {
		t.Fatalf("aux %q", r.Aux)
	}
}

// FuzzNormalizePath checks AppendNormalizedPath on any target: no panic,
// and a result that is a fixed point, holds only printable ASCII, starts
// with "/", has no empty, "." or ".." segment, and fits MaxPath.
func FuzzNormalizePath(f *testing.F) {
	for _, c := range pathCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := AppendNormalizedPath(nil, in)
		if err != nil {
			if len(out) != 0 {
				t.Fatalf("%q: error %v with output %q", in, err, out)
			}
			return
		}
		if len(out) == 0 || out[0] != '/' || len(out) > MaxPath {
			t.Fatalf("%q → %q", in, out)
		}
		for _, c := range out {
			if c < 0x21 || c > 0x7e || c == '?' || c == '#' || c == ';' || c == '\\' {
				t.Fatalf("%q → %q holds %q", in, out, c)
			}
		}
		segs := bytes.Split(out[1:], []byte("/"))
		for i, s := range segs {
			if (len(s) == 0 && i != len(segs)-1) || string(s) == "." || string(s) == ".." {
				t.Fatalf("%q → %q has segment %q", in, out, s)
			}
		}
		again, err := AppendNormalizedPath(nil, out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("%q → %q → %q, %v: not a fixed point", in, out, again, err)
		}
	})
}

// FuzzDeny checks that any method and reason give one well-formed,
// bounded response that the reply parser frames as the whole answer.
func FuzzDeny(f *testing.F) {
	f.Add([]byte("GET"), "l7_not_allowed")
	f.Add([]byte("HEAD"), "")
	f.Add([]byte("POST"), "a\r\nb\x00c")
	f.Fuzz(func(t *testing.T, verb []byte, reason string) {
		out := Deny(nil, &l7.Frame{Verb: verb}, reason)
		if len(out) > maxDenyLen || !bytes.HasPrefix(out, []byte("HTTP/1.1 403 Forbidden\r\n")) {
			t.Fatalf("%q", out)
		}
		p := NewParser()
		ctx := ctxGet
		if string(verb) == "HEAD" {
			ctx = ctxHead
		}
		whole(t, p, l7.DirRequest, []byte(ctx))
		rs := whole(t, p, l7.DirReply, out)
		if finals(rs) != 1 || rs[len(rs)-1] != more(2) {
			t.Fatalf("%q parses as %v", out, rs)
		}
		body := out[bytes.Index(out, []byte("\r\n\r\n"))+4:]
		if string(verb) != "HEAD" && (bytes.IndexByte(body, '\r') >= 0 || bytes.IndexByte(body, '\n') != len(body)-1) {
			t.Fatalf("body %q", body)
		}
	})
}

// FuzzPlainPath checks normalPath, which copies plain paths as they are,
// against appendPath, which normalises any path: the same result and
// error for every origin-form target of printable ASCII.
func FuzzPlainPath(f *testing.F) {
	for _, c := range pathCases {
		f.Add([]byte(c.in))
	}
	f.Add([]byte("/api/v1/users/42/orders?page=2"))
	f.Add([]byte("/a/"))
	f.Add([]byte("/.well-known/x"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || in[0] != '/' {
			return
		}
		for _, c := range in {
			if c < 0x21 || c > 0x7e {
				return
			}
		}
		got, gerr := normalPath(nil, in)
		want, werr := appendPath(nil, cutQuery(in))
		if !bytes.Equal(got, want) || gerr != werr {
			t.Fatalf("%q: normalPath %q, %v; appendPath %q, %v", in, got, gerr, want, werr)
		}
	})
}
