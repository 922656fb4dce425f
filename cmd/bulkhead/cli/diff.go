package cli

import (
	"fmt"
	"strings"
)

// maxDiffCells bounds the LCS table (n×m of the lines that differ after
// trimming the common head and tail). Beyond it the diff is still correct
// but not minimal: the whole differing middle is replaced.
const maxDiffCells = 4 << 20

type editKind byte

const (
	editSame editKind = ' '
	editDel  editKind = '-'
	editAdd  editKind = '+'
)

type edit struct {
	kind editKind
	a, b int // line index in a (for same/del) and in b (for same/add)
}

// UnifiedDiff returns a unified diff (like `diff -u`) turning a into b,
// labelled aName and bName, with context lines of context around each
// change; "" when a and b are equal. The edit script is a longest common
// subsequence of lines.
func UnifiedDiff(aName, bName, a, b string, context int) string {
	if a == b {
		return ""
	}
	al, bl := splitLines(a), splitLines(b)
	edits := diffLines(al, bl)
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", aName, bName)
	for i := 0; i < len(edits); {
		// Find the next change.
		for i < len(edits) && edits[i].kind == editSame {
			i++
		}
		if i == len(edits) {
			break
		}
		start := max(i-context, 0)
		// Extend while changes are within 2*context of each other.
		end := i
		for j := i; j < len(edits); j++ {
			if edits[j].kind != editSame {
				end = j
			} else if j-end > 2*context {
				break
			}
		}
		stop := min(end+context+1, len(edits))
		writeHunk(&sb, al, bl, edits[start:stop])
		i = stop
	}
	return sb.String()
}

func writeHunk(sb *strings.Builder, al, bl []string, h []edit) {
	aStart, bStart, aN, bN := -1, -1, 0, 0
	for _, e := range h {
		switch e.kind {
		case editSame:
			aN++
			bN++
		case editDel:
			aN++
		case editAdd:
			bN++
		}
		if aStart < 0 && e.kind != editAdd {
			aStart = e.a
		}
		if bStart < 0 && e.kind != editDel {
			bStart = e.b
		}
	}
	// An empty side is numbered by the line before it (diff -u does so).
	if aStart < 0 {
		aStart = h[0].a - 1
	}
	if bStart < 0 {
		bStart = h[0].b - 1
	}
	fmt.Fprintf(sb, "@@ -%s +%s @@\n", hunkRange(aStart, aN), hunkRange(bStart, bN))
	for _, e := range h {
		line := ""
		switch e.kind {
		case editSame, editDel:
			line = al[e.a]
		case editAdd:
			line = bl[e.b]
		}
		sb.WriteByte(byte(e.kind))
		if strings.HasSuffix(line, "\n") {
			sb.WriteString(line)
		} else {
			sb.WriteString(line)
			sb.WriteString("\n\\ No newline at end of file\n")
		}
	}
}

func hunkRange(start, n int) string {
	if n == 1 {
		return fmt.Sprint(start + 1)
	}
	if n == 0 {
		return fmt.Sprintf("%d,0", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

// splitLines splits s after each newline; the last line may lack one.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// diffLines returns an edit script from a to b. Each edit of an added line
// carries in a the index of the next line of a (for hunk numbering), and
// each deleted line the index in b likewise.
func diffLines(a, b []string) []edit {
	var out []edit
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		out = append(out, edit{editSame, pre, pre})
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	am, bm := a[pre:len(a)-suf], b[pre:len(b)-suf]
	n, m := len(am), len(bm)
	if n*m > maxDiffCells {
		for i := range n {
			out = append(out, edit{editDel, pre + i, pre})
		}
		for j := range m {
			out = append(out, edit{editAdd, pre + n, pre + j})
		}
	} else {
		// lcs[i][j] = length of the LCS of am[i:] and bm[j:].
		w := m + 1
		lcs := make([]int32, (n+1)*w)
		for i := n - 1; i >= 0; i-- {
			for j := m - 1; j >= 0; j-- {
				if am[i] == bm[j] {
					lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
				} else {
					lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < n || j < m {
			switch {
			case i < n && j < m && am[i] == bm[j]:
				out = append(out, edit{editSame, pre + i, pre + j})
				i++
				j++
			case i < n && (j == m || lcs[(i+1)*w+j] >= lcs[i*w+j+1]):
				out = append(out, edit{editDel, pre + i, pre + j})
				i++
			default:
				out = append(out, edit{editAdd, pre + i, pre + j})
				j++
			}
		}
	}
	for k := range suf {
		out = append(out, edit{editSame, len(a) - suf + k, len(b) - suf + k})
	}
	return out
}
