package http2

import (
	"slices"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// FuzzParseRequest checks, for any input read as a client's stream: no
// panic; every answer within bounds (l7test's Check); the same answers,
// skipped pieces merged, however the input is split.
func FuzzParseRequest(f *testing.F) {
	for _, name := range l7test.Recordings(f, ".req") {
		b := l7test.ReadFile(f, name)
		if len(b) > 8<<10 {
			b = b[:8<<10]
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			t.Skip("large inputs add nothing the limits do not reach")
		}
		fuzzSplits(t, l7.DirRequest, data)
	})
}

// FuzzParseReply is FuzzParseRequest for the server's stream (after a
// prior-knowledge client preface).
func FuzzParseReply(f *testing.F) {
	for _, name := range l7test.Recordings(f, ".rep") {
		f.Add(l7test.ReadFile(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			t.Skip("large inputs add nothing the limits do not reach")
		}
		fuzzSplits(t, l7.DirReply, data)
	})
}

func fuzzSplits(t *testing.T, dir l7.Dir, data []byte) {
	newParse := func() l7test.ParseFunc[result] {
		p := NewParser()
		if dir == l7.DirReply {
			var f l7.Frame
			_, _, _ = p.Parse(l7.DirRequest, []byte(preface), &f)
		}
		return parseFunc(p, dir)
	}
	whole := merge(l7test.Whole(t, newParse(), data))
	step := 1 + len(data)/32
	for s := 0; s <= len(data); s += step {
		got := merge(l7test.Stream(t, newParse(), data, []int{s, len(data)}))
		if !sameAnswers(got, whole) {
			t.Fatalf("split at %d:\n%s", s, l7test.Diff(got, whole))
		}
	}
}

// sameAnswers compares answers; an error may come at a different point of
// the last answer's message (a split may reveal it before all of it is
// there), so only its presence is compared.
func sameAnswers(got, want []result) bool {
	if len(got) != len(want) {
		return false
	}
	if len(got) == 0 {
		return true
	}
	n := len(got) - 1
	if got[n].Err != nil || want[n].Err != nil {
		return slices.Equal(got[:n], want[:n]) && (got[n].Err != nil) == (want[n].Err != nil)
	}
	return slices.Equal(got, want)
}
