// Package l7test holds the test drivers every protocol parser shares:
// checking one Parse answer against the l7.Parser contract, feeding a byte
// stream in chunks the way the proxy does, one byte at a time, cut at every
// offset or in random chunks, and comparing the answers. It is imported
// only from _test files.
//
// A package describes its answers with its own comparable result type R
// (Parse's op, n and error plus the Frame fields it compares, copied into
// strings) and hands the drivers a parse function that makes one checked
// Parse call and returns that R.
package l7test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Answer is a package's comparable copy of one Parse answer.
type Answer interface {
	comparable
	fmt.Stringer
	// Answer returns Parse's op, n and error.
	Answer() (op l7.Op, n int, err error)
}

// ParseFunc makes one checked Parse call on data with one parser.
type ParseFunc[R Answer] func(t testing.TB, data []byte) R

// Dirs is both directions, requests first.
var Dirs = []l7.Dir{l7.DirRequest, l7.DirReply}

// Check holds what a protocol allows beyond the l7.Parser contract.
type Check struct {
	// ViewOK reports whether v may stand in the Frame field named field
	// ("verb", "sub", "resource", "aux" or "more") for the message msg, for
	// parsers that point some fields into their own scratch. Nil means
	// Within(msg, v).
	ViewOK func(field string, msg, v []byte) bool
	// Pass allows OpPass (with n = 0); without it OpPass fails the test.
	Pass bool
}

// Answer checks what must hold for every Parse answer: an error is
// ErrMalformed or ErrTooLong; OpMore asks for at least one byte; OpPass,
// where allowed, has n = 0; OpFrame and OpSkip take 1..len(data) bytes,
// carry dir, a verb within l7.MaxVerb, at most len(f.More) more resources
// and fields that are views of the message (see ViewOK).
func (c Check) Answer(t testing.TB, dir l7.Dir, data []byte, op l7.Op, n int, err error, f *l7.Frame) {
	t.Helper()
	viewOK := c.ViewOK
	if viewOK == nil {
		viewOK = func(_ string, msg, v []byte) bool { return Within(msg, v) }
	}
	switch {
	case err != nil:
		if !errors.Is(err, l7.ErrMalformed) && !errors.Is(err, l7.ErrTooLong) {
			t.Fatalf("%q: error %v is neither ErrMalformed nor ErrTooLong", data, err)
		}
	case op == l7.OpMore:
		if n < 1 {
			t.Fatalf("%q: OpMore with n = %d, want >= 1", data, n)
		}
	case op == l7.OpPass && c.Pass:
		if n != 0 {
			t.Fatalf("%q: OpPass with n = %d", data, n)
		}
	case op == l7.OpFrame || op == l7.OpSkip:
		if n < 1 || n > len(data) {
			t.Fatalf("%q: %v with n = %d, want 1..%d", data, op, n, len(data))
		}
		if f.Dir != dir {
			t.Fatalf("%q: frame dir %v, want %v", data, f.Dir, dir)
		}
		msg := data[:n]
		for _, v := range [...]struct {
			name string
			b    []byte
		}{{"verb", f.Verb}, {"sub", f.Sub}, {"resource", f.Resource}, {"aux", f.Aux}} {
			if !viewOK(v.name, msg, v.b) {
				t.Fatalf("%q: %s %q is not a view of the message", data, v.name, v.b)
			}
		}
		if f.NMore < 0 || f.NMore > len(f.More) {
			t.Fatalf("%q: %d more resources", data, f.NMore)
		}
		for i := 0; i < f.NMore; i++ {
			if !viewOK("more", msg, f.More[i]) {
				t.Fatalf("%q: resource %q is not a view of the message", data, f.More[i])
			}
		}
		if len(f.Verb) > l7.MaxVerb {
			t.Fatalf("%q: verb of %d bytes", data, len(f.Verb))
		}
	default:
		t.Fatalf("%q: unknown op %v", data, op)
	}
}

// Within reports whether v is empty or a sub-slice of data.
func Within(data, v []byte) bool {
	if len(v) == 0 {
		return true
	}
	if len(data) == 0 {
		return false
	}
	d0 := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	v0 := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	return v0 >= d0 && v0+uintptr(len(v)) <= d0+uintptr(len(data))
}

// Stream parses a byte stream the way the proxy does: the input arrives in
// chunks ending at the given offsets (ascending, the last one len(data));
// after each chunk, parse is called on the unconsumed bytes until it asks
// for more. It returns every answer but the OpMore ones made before the
// stream ended, and the final one; an error or OpPass ends it.
func Stream[R Answer](t testing.TB, parse ParseFunc[R], data []byte, ends []int) []R {
	t.Helper()
	var out []R
	consumed := 0
	for ci, end := range ends {
		last := ci == len(ends)-1
		for {
			r := parse(t, data[consumed:end])
			op, n, err := r.Answer()
			if err != nil || op == l7.OpPass {
				return append(out, r)
			}
			if op == l7.OpMore {
				if last {
					out = append(out, r)
				}
				break
			}
			out = append(out, r)
			consumed += n
		}
	}
	return out
}

// Whole is Stream with all of data in one chunk.
func Whole[R Answer](t testing.TB, parse ParseFunc[R], data []byte) []R {
	t.Helper()
	return Stream(t, parse, data, []int{len(data)})
}

// Bytewise feeds msg, one complete message, one byte at a time to the
// parser of parse: every answer before the last byte must be OpMore without
// error, asking for no byte past the end of msg, and the answer to all of
// msg must be want.
func Bytewise[R Answer](t testing.TB, parse ParseFunc[R], msg []byte, want R) {
	t.Helper()
	BytewiseWith(t, parse, msg, want, Feed{})
}

// Feed tunes BytewiseWith.
type Feed struct {
	// Step grows the input Step bytes at a time (0 or 1: one byte), for
	// long messages.
	Step int
	// ExactFrom, when above 0, asks every OpMore on a prefix of at least
	// ExactFrom bytes for exactly the rest of the message: the protocol
	// knows the message's length from its first ExactFrom bytes.
	ExactFrom int
}

// BytewiseWith is Bytewise tuned by fd.
func BytewiseWith[R Answer](t testing.TB, parse ParseFunc[R], msg []byte, want R, fd Feed) {
	t.Helper()
	step := max(fd.Step, 1)
	for k := 0; k < len(msg); k += step {
		got := parse(t, msg[:k])
		op, n, err := got.Answer()
		if op != l7.OpMore || err != nil {
			t.Fatalf("prefix %q: %v, want more", msg[:k], got)
		}
		if k+n > len(msg) {
			t.Fatalf("prefix %q: more %d overshoots the %d-byte message", msg[:k], n, len(msg))
		}
		if fd.ExactFrom > 0 && k >= fd.ExactFrom && k+n != len(msg) {
			t.Fatalf("prefix of %d: more %d, want exactly %d", k, n, len(msg)-k)
		}
	}
	if got := parse(t, msg); got != want {
		t.Fatalf("after feeding bytes one by one: %v, want %v", got, want)
	}
}

// CheckCorpus checks that whole, the answers to a corpus, ends on a
// message boundary and holds at least min answers.
func CheckCorpus[R Answer](t testing.TB, whole []R, min int) {
	t.Helper()
	if len(whole) == 0 {
		t.Fatal("corpus gives no answer")
	}
	last := whole[len(whole)-1]
	if op, _, err := last.Answer(); err != nil || op != l7.OpMore {
		t.Fatalf("corpus does not end on a message boundary: %v", last)
	}
	if len(whole) < min {
		t.Fatalf("corpus holds only %d answers, want at least %d", len(whole), min)
	}
}

// EverySplit cuts data in two at every offset, 0 and len(data) included,
// and feeds both parts to a fresh parser from newParse: the answers, passed through norm (nil: as
// they are), must be want.
func EverySplit[R Answer](t testing.TB, newParse func() ParseFunc[R], data []byte, want []R, norm func([]R) []R) {
	t.Helper()
	EverySplitStep(t, newParse, data, want, norm, 1)
}

// EverySplitStep is EverySplit cutting at every step-th offset from 0,
// for long inputs.
func EverySplitStep[R Answer](t testing.TB, newParse func() ParseFunc[R], data []byte, want []R, norm func([]R) []R, step int) {
	t.Helper()
	norm = orSame(norm)
	for s := 0; s <= len(data); s += step {
		got := norm(Stream(t, newParse(), data, []int{s, len(data)}))
		if !slices.Equal(got, want) {
			t.Fatalf("split at %d:\n%s", s, Diff(got, want))
		}
	}
}

// RandomChunks feeds data rounds times in random chunks of 1..maxChunk
// bytes to a fresh parser from newParse: the answers, passed through norm
// (nil: as they are), must be want.
func RandomChunks[R Answer](t testing.TB, rng *rand.Rand, newParse func() ParseFunc[R], data []byte, want []R, maxChunk, rounds int, norm func([]R) []R) {
	t.Helper()
	norm = orSame(norm)
	for range rounds {
		var ends []int
		for e := 0; e < len(data); {
			e = min(len(data), e+1+rng.IntN(maxChunk))
			ends = append(ends, e)
		}
		got := norm(Stream(t, newParse(), data, ends))
		if !slices.Equal(got, want) {
			t.Fatalf("chunks ending at %v:\n%s", ends, Diff(got, want))
		}
	}
}

func orSame[R any](norm func([]R) []R) func([]R) []R {
	if norm == nil {
		return func(rs []R) []R { return rs }
	}
	return norm
}

// Diff lists the answers where got and want differ, by index.
func Diff[R fmt.Stringer](got, want []R) string {
	var b strings.Builder
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i].String()
		}
		if i < len(want) {
			w = want[i].String()
		}
		if g != w {
			fmt.Fprintf(&b, "#%d\n got %s\nwant %s\n", i, g, w)
		}
	}
	return b.String()
}

// Recordings returns the names of the files testdata/*ext, and fails the
// test when there are none.
func Recordings(t testing.TB, ext string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "*"+ext))
	if err != nil || len(names) == 0 {
		t.Fatalf("no testdata/*%s: %v", ext, err)
	}
	return names
}

// ReadFile returns the contents of the file name or fails the test.
func ReadFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
