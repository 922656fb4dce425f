package cli

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestUnifiedDiff(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		context    int
		want       string
	}{
		{name: "equal", a: "x\ny\n", b: "x\ny\n", context: 3, want: ""},
		{name: "both empty", a: "", b: "", context: 3, want: ""},
		{
			name: "one line changed", a: "a\nb\nc\n", b: "a\nB\nc\n", context: 3,
			want: "--- a\n+++ b\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
		},
		{
			name: "from empty", a: "", b: "x\ny\n", context: 3,
			want: "--- a\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n",
		},
		{
			name: "to empty", a: "x\n", b: "", context: 3,
			want: "--- a\n+++ b\n@@ -1 +0,0 @@\n-x\n",
		},
		{
			name: "insertion without context", a: "a\nb\nc\n", b: "a\nb\nX\nc\n", context: 0,
			want: "--- a\n+++ b\n@@ -2,0 +3 @@\n+X\n",
		},
		{
			name: "two hunks", context: 1,
			a:    "1\n2\n3\n4\n5\n6\n7\n8\n9\n",
			b:    "1\nTWO\n3\n4\n5\n6\n7\nEIGHT\n9\n",
			want: "--- a\n+++ b\n@@ -1,3 +1,3 @@\n 1\n-2\n+TWO\n 3\n@@ -7,3 +7,3 @@\n 7\n-8\n+EIGHT\n 9\n",
		},
		{
			name: "close changes share a hunk", context: 1,
			a:    "1\n2\n3\n4\n5\n",
			b:    "1\nTWO\n3\nFOUR\n5\n",
			want: "--- a\n+++ b\n@@ -1,5 +1,5 @@\n 1\n-2\n+TWO\n 3\n-4\n+FOUR\n 5\n",
		},
		{
			name: "no newline at end", a: "a\nb", b: "a\nc", context: 3,
			want: "--- a\n+++ b\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := UnifiedDiff("a", "b", tc.a, tc.b, tc.context); got != tc.want {
				t.Errorf("UnifiedDiff:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestUnifiedDiffRandom checks on random inputs that the diff, applied to
// a, gives b, and that it changes as few lines as a longest common
// subsequence allows (computed here independently).
func TestUnifiedDiffRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	gen := func() string {
		var sb strings.Builder
		for range r.IntN(14) {
			sb.WriteString(strconv.Itoa(r.IntN(5)) + "\n")
		}
		return sb.String()
	}
	for i := range 2000 {
		a, b := gen(), gen()
		ctx := r.IntN(4)
		d := UnifiedDiff("a", "b", a, b, ctx)
		if a == b {
			if d != "" {
				t.Fatalf("case %d: equal inputs gave a diff:\n%s", i, d)
			}
			continue
		}
		got, err := applyUnified(a, d)
		if err != nil {
			t.Fatalf("case %d: %v\na=%q b=%q\n%s", i, err, a, b, d)
		}
		if got != b {
			t.Fatalf("case %d: patched a = %q, want b = %q\n%s", i, got, b, d)
		}
		al, bl := splitLines(a), splitLines(b)
		want := len(al) + len(bl) - 2*lcsLen(al, bl)
		if n := changedLines(d); n != want {
			t.Fatalf("case %d: %d lines changed, a minimal diff changes %d\n%s", i, n, want, d)
		}
	}
}

func lcsLen(a, b []string) int {
	memo := map[[2]int]int{}
	var f func(i, j int) int
	f = func(i, j int) int {
		if i == len(a) || j == len(b) {
			return 0
		}
		if v, ok := memo[[2]int{i, j}]; ok {
			return v
		}
		v := max(f(i+1, j), f(i, j+1))
		if a[i] == b[j] {
			v = max(v, 1+f(i+1, j+1))
		}
		memo[[2]int{i, j}] = v
		return v
	}
	return f(0, 0)
}

func changedLines(d string) int {
	n := 0
	for _, l := range strings.Split(d, "\n")[2:] {
		if strings.HasPrefix(l, "-") || strings.HasPrefix(l, "+") {
			n++
		}
	}
	return n
}

// applyUnified applies a unified diff of whole lines (every line ending in
// a newline) to a, checking every context and removed line and every hunk
// header's counts.
func applyUnified(a, d string) (string, error) {
	src := splitLines(a)
	lines := strings.SplitAfter(d, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		return "", fmt.Errorf("bad header")
	}
	var out []string
	pos := 0
	for i := 2; i < len(lines) && lines[i] != ""; {
		var as, an, bs, bn int
		h := lines[i]
		if _, err := fmt.Sscanf(normalizeHeader(h), "@@ -%d,%d +%d,%d @@\n", &as, &an, &bs, &bn); err != nil {
			return "", fmt.Errorf("hunk header %q: %v", h, err)
		}
		start := as - 1
		if an == 0 {
			start = as
		}
		if start < pos {
			return "", fmt.Errorf("hunk %q overlaps", h)
		}
		out = append(out, src[pos:start]...)
		pos = start
		if bn == 0 && bs != len(out) || bn > 0 && bs != len(out)+1 {
			return "", fmt.Errorf("hunk %q: new start %d, have %d lines", h, bs, len(out))
		}
		i++
		ga, gb := 0, 0
		for ; i < len(lines) && lines[i] != "" && !strings.HasPrefix(lines[i], "@@"); i++ {
			l := lines[i]
			switch l[0] {
			case ' ', '-':
				if pos >= len(src) || src[pos] != l[1:] {
					return "", fmt.Errorf("line %q does not match a's line %d", l, pos+1)
				}
				if l[0] == ' ' {
					out = append(out, src[pos])
					gb++
				}
				pos++
				ga++
			case '+':
				out = append(out, l[1:])
				gb++
			default:
				return "", fmt.Errorf("bad line %q", l)
			}
		}
		if ga != an || gb != bn {
			return "", fmt.Errorf("hunk %q has %d/%d lines", h, ga, gb)
		}
	}
	out = append(out, src[pos:]...)
	return strings.Join(out, ""), nil
}

// normalizeHeader writes the implicit count 1 ("-3" → "-3,1").
func normalizeHeader(h string) string {
	f := strings.Fields(h)
	for i := 1; i <= 2 && i < len(f); i++ {
		if !strings.Contains(f[i], ",") {
			f[i] += ",1"
		}
	}
	return strings.Join(f, " ") + "\n"
}
