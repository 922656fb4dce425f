package l7test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// lenParser is a small real protocol: one length byte, then that many
// bytes of verb. over asks for one byte too many while the body is short,
// under for one byte only; forget makes a parser that saw a short input
// answer the next one wrong.
type lenParser struct {
	over, under, forget bool
	short               bool
}

func (p *lenParser) Parse(dir l7.Dir, data []byte, f *l7.Frame) (l7.Op, int, error) {
	if len(data) < 1 {
		return l7.OpMore, 1, nil
	}
	n := 1 + int(data[0])
	if n == 1 {
		return l7.OpMore, 0, l7.ErrMalformed
	}
	if len(data) < n {
		p.short = true
		if p.over && len(data) > 1 {
			return l7.OpMore, n - len(data) + 1, nil
		}
		if p.under {
			return l7.OpMore, 1, nil
		}
		return l7.OpMore, n - len(data), nil
	}
	f.Reset(dir)
	f.Verb = data[1:n]
	if p.forget && p.short {
		f.Verb = data[1 : n-1]
	}
	p.short = false
	return l7.OpFrame, n, nil
}

type res struct {
	Op   l7.Op
	N    int
	Err  error
	Verb string
}

func (r res) String() string              { return fmt.Sprintf("%v %d %v %q", r.Op, r.N, r.Err, r.Verb) }
func (r res) Answer() (l7.Op, int, error) { return r.Op, r.N, r.Err }
func newParse(p *lenParser) func() ParseFunc[res] {
	return func() ParseFunc[res] {
		q := *p
		return func(t testing.TB, data []byte) res {
			var f l7.Frame
			op, n, err := q.Parse(l7.DirRequest, data, &f)
			Check{}.Answer(t, l7.DirRequest, data, op, n, err, &f)
			if err != nil {
				return res{Err: err}
			}
			return res{Op: op, N: n, Verb: string(f.Verb)}
		}
	}
}

// fatal is a testing.TB whose Fatal stops the driver and records why.
type fatal struct {
	testing.TB
	msg string
}

type stopped struct{}

func (f *fatal) Helper() {}
func (f *fatal) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (f *fatal) Fatal(args ...any) { f.msg = fmt.Sprint(args...); panic(stopped{}) }

// fails runs fn with a recording TB and returns the failure message, or
// "" when fn passed.
func fails(t *testing.T, fn func(tb testing.TB)) (msg string) {
	t.Helper()
	tb := &fatal{TB: t}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopped); !ok {
				panic(r)
			}
			msg = tb.msg
		}
	}()
	fn(tb)
	return ""
}

var pipeline = []byte("\x03GET\x03SET\x01X\x05HELLO")

func TestDriversPassAGoodParser(t *testing.T) {
	np := newParse(&lenParser{})
	want := Whole(t, np(), pipeline)
	if len(want) != 5 || want[3].Verb != "HELLO" || want[4] != (res{Op: l7.OpMore, N: 1}) {
		t.Fatalf("whole: %v", want)
	}
	CheckCorpus(t, want, 5)
	Bytewise(t, np(), []byte("\x05HELLO"), want[3])
	BytewiseWith(t, np(), []byte("\x05HELLO"), want[3], Feed{Step: 2, ExactFrom: 1})
	EverySplit(t, np, pipeline, want, nil)
	RandomChunks(t, rand.New(rand.NewPCG(1, 2)), np, pipeline, want, 4, 20, nil)
}

func TestDriversFailABadParser(t *testing.T) {
	hello := []byte("\x05HELLO")
	want := res{Op: l7.OpFrame, N: 6, Verb: "HELLO"}
	for _, tt := range []struct {
		name, want string
		fn         func(tb testing.TB)
	}{
		{"overshoot", "overshoots", func(tb testing.TB) { Bytewise(tb, newParse(&lenParser{over: true})(), hello, want) }},
		{"not exact", "want exactly", func(tb testing.TB) {
			BytewiseWith(tb, newParse(&lenParser{under: true})(), hello, want, Feed{})
			BytewiseWith(tb, newParse(&lenParser{under: true})(), hello, want, Feed{ExactFrom: 1})
		}},
		{"forgets", "after feeding", func(tb testing.TB) { Bytewise(tb, newParse(&lenParser{forget: true})(), hello, want) }},
		{"split", "split at", func(tb testing.TB) {
			np := newParse(&lenParser{forget: true})
			EverySplit(tb, np, pipeline, Whole(tb, np(), pipeline), nil)
		}},
		{"chunks", "chunks ending", func(tb testing.TB) {
			np := newParse(&lenParser{forget: true})
			RandomChunks(tb, rand.New(rand.NewPCG(1, 2)), np, pipeline, Whole(tb, np(), pipeline), 3, 20, nil)
		}},
		{"short corpus", "holds only", func(tb testing.TB) { CheckCorpus(tb, Whole(tb, newParse(&lenParser{})(), pipeline), 6) }},
		{"open corpus", "boundary", func(tb testing.TB) { CheckCorpus(tb, Whole(tb, newParse(&lenParser{})(), []byte("\x03GET\x00")), 1) }},
		{"more 0", "OpMore with n = 0", func(tb testing.TB) {
			Check{}.Answer(tb, l7.DirRequest, nil, l7.OpMore, 0, nil, &l7.Frame{})
		}},
		{"pass", "unknown op", func(tb testing.TB) { Check{}.Answer(tb, l7.DirRequest, nil, l7.OpPass, 0, nil, &l7.Frame{}) }},
		{"pass n", "OpPass with n = 1", func(tb testing.TB) {
			Check{Pass: true}.Answer(tb, l7.DirRequest, nil, l7.OpPass, 1, nil, &l7.Frame{})
		}},
		{"error", "neither", func(tb testing.TB) {
			Check{}.Answer(tb, l7.DirRequest, nil, l7.OpMore, 0, fmt.Errorf("other"), &l7.Frame{})
		}},
		{"past end", "want 1..3", func(tb testing.TB) {
			Check{}.Answer(tb, l7.DirRequest, []byte("abc"), l7.OpFrame, 4, nil, &l7.Frame{})
		}},
		{"dir", "frame dir", func(tb testing.TB) {
			Check{}.Answer(tb, l7.DirRequest, []byte("abc"), l7.OpFrame, 3, nil, &l7.Frame{Dir: l7.DirReply})
		}},
		{"view", "resource", func(tb testing.TB) {
			data := []byte("abcdef")
			Check{}.Answer(tb, l7.DirRequest, data, l7.OpFrame, 3, nil, &l7.Frame{Resource: data[3:]})
		}},
		{"more view", "resource \"x\"", func(tb testing.TB) {
			f := l7.Frame{Resource: []byte("a"), NMore: 1}
			f.More[0] = []byte("x")
			data := []byte("abc")
			f.Resource = data[:1]
			Check{}.Answer(tb, l7.DirRequest, data, l7.OpFrame, 3, nil, &f)
		}},
		{"long verb", "verb of", func(tb testing.TB) {
			data := make([]byte, l7.MaxVerb+1)
			Check{}.Answer(tb, l7.DirRequest, data, l7.OpFrame, len(data), nil, &l7.Frame{Verb: data})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if msg := fails(t, tt.fn); !strings.Contains(msg, tt.want) {
				t.Fatalf("failure %q, want one containing %q", msg, tt.want)
			}
		})
	}
}

func TestWithin(t *testing.T) {
	data := []byte("abcdef")
	for _, tt := range []struct {
		v    []byte
		want bool
	}{{nil, true}, {data[2:4], true}, {data, true}, {[]byte("ab"), false}, {data[4:6:6], true}} {
		if got := Within(data[:6], tt.v); got != tt.want {
			t.Errorf("Within(%q) = %v", tt.v, got)
		}
	}
	if Within(data[:2], data[1:3]) || Within(nil, data[:1]) {
		t.Error("a view past the end is within")
	}
}
