package enforce

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// Limits on the generic L7 matchers (Rule.l7) that Compile enforces.
const (
	// MaxL7Rules bounds the L7Rules of one Rule.
	MaxL7Rules = 1024
	// MaxPatterns bounds one list of patterns (L7Rule.resources or
	// L7Rule.aux).
	MaxPatterns = 4096
	// MaxRulePatterns bounds the patterns of all the L7Rules of one Rule.
	MaxRulePatterns = 1 << 16
	// MaxPatternLen bounds one pattern's value in bytes. Values of frames
	// may be longer: a longer value never equals an exact pattern, and
	// prefixes and suffixes look only at its first and last MaxPatternLen
	// bytes, so case folding works on a bounded stack buffer.
	MaxPatternLen = 512
	// MaxTemplateSegments bounds the "/"-separated segments of a template.
	MaxTemplateSegments = 64
	// maxParamName bounds the name in a template's "{name}".
	maxParamName = 64
)

// noRank is "no rule": larger than every rank.
const noRank = math.MaxInt32

type patKind uint8

const (
	patExact patKind = iota + 1
	patPrefix
	patSuffix
	patTemplate
)

func (k patKind) String() string {
	switch k {
	case patExact:
		return "exact"
	case patPrefix:
		return "prefix"
	case patSuffix:
		return "suffix"
	case patTemplate:
		return "template"
	}
	return "pattern"
}

// pattern is a validated bulkheadv1.Pattern.
type pattern struct {
	kind  patKind
	value string // lower-cased when fold
	fold  bool
	segs  []tseg // template only
}

// tseg is one segment of a template.
type tseg struct {
	kind uint8 // segLit, segParam, segRest
	lit  string
}

const (
	segLit uint8 = iota
	segParam
	segRest
)

// l7Rule is a validated bulkheadv1.L7Rule.
type l7Rule struct {
	verbs   []command // upper case; empty: any verb
	res     []pattern // empty: any resource, and messages naming none
	auxPats []pattern // empty: any aux
	aux     *patIndex // auxPats compiled (entries of rank 0); nil when empty
}

// checkL7 validates the L7Rules of one rule (path names the rule).
func checkL7(pr *problems, path string, in []*bulkheadv1.L7Rule) []*l7Rule {
	if len(in) > MaxL7Rules {
		pr.add(path+".l7", "%d rules, at most %d", len(in), MaxL7Rules)
		return nil
	}
	out := make([]*l7Rule, 0, len(in))
	total := 0
	for i, lr := range in {
		lpath := fmt.Sprintf("%s.l7[%d]", path, i)
		if lr == nil {
			pr.add(lpath, "nil l7 rule")
			continue
		}
		c := &l7Rule{}
		switch verbs := lr.GetVerbs(); {
		case len(verbs) > MaxCommands:
			pr.add(lpath+".verbs", "%d verbs, at most %d", len(verbs), MaxCommands)
		default:
			for j, s := range verbs {
				v, err := parseCommand(s, "verb")
				if err != "" {
					pr.add(fmt.Sprintf("%s.verbs[%d]", lpath, j), "%q: %s", s, err)
					continue
				}
				c.verbs = append(c.verbs, v)
			}
		}
		c.res = checkPatterns(pr, lpath+".resources", lr.GetResources())
		c.auxPats = checkPatterns(pr, lpath+".aux", lr.GetAux())
		total += len(lr.GetResources()) + len(lr.GetAux())
		if len(c.auxPats) > 0 {
			c.aux = &patIndex{}
			for _, p := range c.auxPats {
				c.aux.add(p, entry{})
			}
			c.aux.finish()
		}
		out = append(out, c)
	}
	if total > MaxRulePatterns {
		pr.add(path+".l7", "%d patterns in all, at most %d", total, MaxRulePatterns)
	}
	return out
}

// checkPatterns validates one list of patterns (path names the list).
func checkPatterns(pr *problems, path string, in []*bulkheadv1.Pattern) []pattern {
	if len(in) > MaxPatterns {
		pr.add(path, "%d patterns, at most %d", len(in), MaxPatterns)
		return nil
	}
	out := make([]pattern, 0, len(in))
	for i, p := range in {
		pat, field, problem := parsePattern(p)
		if problem != "" {
			pr.add(fmt.Sprintf("%s[%d]%s", path, i, field), "%s", problem)
			continue
		}
		out = append(out, pat)
	}
	return out
}

// parsePattern validates one Pattern. On error it returns the field at
// fault (".exact", …, or "" for the pattern itself) and the problem.
func parsePattern(p *bulkheadv1.Pattern) (pat pattern, field, problem string) {
	var v string
	switch k := p.GetKind().(type) {
	case *bulkheadv1.Pattern_Exact:
		pat.kind, v = patExact, k.Exact
	case *bulkheadv1.Pattern_Prefix:
		pat.kind, v = patPrefix, k.Prefix
	case *bulkheadv1.Pattern_Suffix:
		pat.kind, v = patSuffix, k.Suffix
	case *bulkheadv1.Pattern_Template:
		pat.kind, v = patTemplate, k.Template
	default:
		return pattern{}, "", "no exact, prefix, suffix or template set"
	}
	field = "." + pat.kind.String()
	switch {
	case v == "":
		return pattern{}, field, "empty pattern (omit the list to match anything)"
	case len(v) > MaxPatternLen:
		return pattern{}, field, fmt.Sprintf("%d bytes, at most %d", len(v), MaxPatternLen)
	case strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return pattern{}, field, fmt.Sprintf("%q: control characters are not allowed", v)
	case pat.kind == patSuffix && v[0] == '*':
		return pattern{}, field, fmt.Sprintf("%q: patterns are literal, write the suffix without '*' (%q)", v, v[1:])
	case pat.kind == patPrefix && v[len(v)-1] == '*':
		return pattern{}, field, fmt.Sprintf("%q: patterns are literal, write the prefix without '*' (%q)", v, v[:len(v)-1])
	}
	pat.fold = p.GetFoldCase()
	if pat.fold {
		v = lowerASCII(v)
	}
	pat.value = v
	if pat.kind == patTemplate {
		segs, problem := parseTemplate(v)
		if problem != "" {
			return pattern{}, field, fmt.Sprintf("%q: %s", v, problem)
		}
		pat.segs = segs
	}
	return pat, "", ""
}

// parseTemplate splits a path template into segments: literals, "{name}"
// (one non-empty segment) and a final "{*}" (the non-empty rest).
func parseTemplate(t string) ([]tseg, string) {
	parts := strings.Split(t, "/")
	if len(parts) > MaxTemplateSegments {
		return nil, fmt.Sprintf("%d segments, at most %d", len(parts), MaxTemplateSegments)
	}
	segs := make([]tseg, 0, len(parts))
	for i, s := range parts {
		switch {
		case s == "{*}":
			if i != len(parts)-1 {
				return nil, "\"{*}\" must be the last segment"
			}
			segs = append(segs, tseg{kind: segRest})
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && len(s) >= 2:
			name := s[1 : len(s)-1]
			if name == "" || len(name) > maxParamName || strings.IndexFunc(name, func(r rune) bool {
				return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-')
			}) >= 0 {
				return nil, fmt.Sprintf("bad parameter %q (letters, digits, '_' or '-', at most %d)", s, maxParamName)
			}
			segs = append(segs, tseg{kind: segParam})
		case strings.ContainsAny(s, "{}"):
			return nil, fmt.Sprintf("segment %q: '{' and '}' only enclose a whole segment (\"{id}\", a final \"{*}\")", s)
		default:
			segs = append(segs, tseg{kind: segLit, lit: s})
		}
	}
	return segs, ""
}

func lowerASCII(s string) string {
	b := []byte(s)
	lowerInto(b, b)
	return string(b)
}

// lowerInto writes src lower-cased (ASCII only) to dst, which must be at
// least as long.
func lowerInto(dst, src []byte) {
	for i, c := range src {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
}

// entry is what a pattern stands for in an index: the rank of the rule it
// comes from and the aux patterns of its L7Rule (nil: any aux).
type entry struct {
	rank int32
	aux  *patIndex
}

// entries is sorted by rank; after an entry without aux nothing follows
// (it covers everything that a later entry would).
type entries []entry

// best returns the lowest rank below cur of an entry whose aux patterns
// match the message's aux (sc.aux), or cur.
func (es entries) best(cur int32, sc *scratch) int32 {
	for i := range es {
		e := &es[i]
		if e.rank >= cur {
			break
		}
		if e.aux == nil || e.aux.matches(&sc.aux, sc) {
			return e.rank
		}
	}
	return cur
}

func (es entries) normalize() entries {
	slices.SortStableFunc(es, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), boolOrder(a.aux != nil, b.aux != nil))
	})
	out := es[:0]
	for _, e := range es {
		if n := len(out); n > 0 {
			if out[n-1].aux == nil {
				break // the entry before covers this one and every later one
			}
			if out[n-1] == e {
				continue
			}
		}
		out = append(out, e)
	}
	return slices.Clip(out)
}

func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// patIndex finds, for a value, the entries of every pattern that matches
// it, without scanning the patterns: exact values in a map; prefixes and
// suffixes in a map keyed by the pattern, probed once per distinct pattern
// length; templates in a segment trie. Patterns with fold_case are kept
// lower-cased apart and probed with the value lower-cased.
type patIndex struct {
	cs, fold patSet
	min      int32 // lowest rank of any entry
}

type patSet struct {
	exact  map[string]entries
	prefix lenMap
	suffix lenMap
	tmpl   *tnode
	min    int32 // lowest rank in the set; noRank when empty
}

// lenMap holds prefixes or suffixes keyed by value; lens lists their
// distinct lengths in ascending order.
type lenMap struct {
	lens []int
	m    map[string]entries
}

// tnode is a node of a template trie; depth d holds segment d.
type tnode struct {
	lit   map[string]*tnode
	param *tnode  // "{name}": any one non-empty segment
	rest  entries // a "{*}" after this node's segments
	end   entries // templates ending with this node's segment
	min   int32   // lowest rank in the subtree
}

func (p *patIndex) add(pat pattern, e entry) {
	s := &p.cs
	if pat.fold {
		s = &p.fold
	}
	switch pat.kind {
	case patExact:
		if s.exact == nil {
			s.exact = map[string]entries{}
		}
		s.exact[pat.value] = append(s.exact[pat.value], e)
	case patPrefix:
		s.prefix.add(pat.value, e)
	case patSuffix:
		s.suffix.add(pat.value, e)
	case patTemplate:
		if s.tmpl == nil {
			s.tmpl = &tnode{}
		}
		n := s.tmpl
		for i, sg := range pat.segs {
			switch sg.kind {
			case segRest:
				n.rest = append(n.rest, e)
				continue
			case segParam:
				if n.param == nil {
					n.param = &tnode{}
				}
				n = n.param
			default:
				if n.lit == nil {
					n.lit = map[string]*tnode{}
				}
				c := n.lit[sg.lit]
				if c == nil {
					c = &tnode{}
					n.lit[sg.lit] = c
				}
				n = c
			}
			if i == len(pat.segs)-1 {
				n.end = append(n.end, e)
			}
		}
	}
}

func (l *lenMap) add(v string, e entry) {
	if l.m == nil {
		l.m = map[string]entries{}
	}
	l.m[v] = append(l.m[v], e)
	l.lens = append(l.lens, len(v))
}

// finish sorts and prunes what add collected; the index is then read-only.
func (p *patIndex) finish() {
	p.cs.finish()
	p.fold.finish()
	p.min = min(p.cs.min, p.fold.min)
}

func (s *patSet) finish() {
	s.min = noRank
	for k, es := range s.exact {
		es = es.normalize()
		s.exact[k] = es
		s.min = min(s.min, es[0].rank)
	}
	for _, l := range []*lenMap{&s.prefix, &s.suffix} {
		slices.Sort(l.lens)
		l.lens = slices.Clip(slices.Compact(l.lens))
		for k, es := range l.m {
			es = es.normalize()
			l.m[k] = es
			s.min = min(s.min, es[0].rank)
		}
	}
	if s.tmpl != nil {
		s.min = min(s.min, s.tmpl.finish())
	}
}

func (n *tnode) finish() int32 {
	n.min = noRank
	if len(n.rest) > 0 {
		n.rest = n.rest.normalize()
		n.min = n.rest[0].rank
	}
	if len(n.end) > 0 {
		n.end = n.end.normalize()
		n.min = min(n.min, n.end[0].rank)
	}
	for _, c := range n.lit {
		n.min = min(n.min, c.finish())
	}
	if n.param != nil {
		n.min = min(n.min, n.param.finish())
	}
	return n.min
}

// scratch is the per-message working memory of the generic matcher, on the
// stack of Conn.Message: the resource being judged and the message's aux.
type scratch struct {
	res value
	aux value
}

// value is a byte string to match, with a buffer for a lower-cased part of
// it: its first or its last MaxPatternLen bytes (the same when it is not
// longer), or one template segment. The buffer is filled on demand and the
// struct keeps no pointer into itself.
type value struct {
	raw []byte
	low lowState
	buf [MaxPatternLen]byte
}

type lowState uint8

const (
	lowNone lowState = iota // buf holds nothing of use
	lowHead                 // buf holds raw[:min(len, MaxPatternLen)], lower-cased
	lowTail                 // buf holds the last MaxPatternLen bytes, lower-cased (raw is longer)
)

func (v *value) set(b []byte) {
	v.raw = b
	v.low = lowNone
}

// head returns the value's first min(len, MaxPatternLen) bytes, lower-cased.
func (v *value) head() []byte {
	n := min(len(v.raw), MaxPatternLen)
	if v.low != lowHead {
		lowerInto(v.buf[:n], v.raw[:n])
		v.low = lowHead
	}
	return v.buf[:n]
}

// tail returns the value's last min(len, MaxPatternLen) bytes, lower-cased.
func (v *value) tail() []byte {
	if len(v.raw) <= MaxPatternLen {
		return v.head()
	}
	if v.low != lowTail {
		lowerInto(v.buf[:], v.raw[len(v.raw)-MaxPatternLen:])
		v.low = lowTail
	}
	return v.buf[:]
}

// lowered returns raw[i:j] (at most MaxPatternLen bytes) lower-cased, in
// the buffer.
func (v *value) lowered(i, j int) []byte {
	v.low = lowNone
	lowerInto(v.buf[:j-i], v.raw[i:j])
	return v.buf[:j-i]
}

// matches reports whether some pattern of p matches v (for aux patterns,
// whose entries have rank 0 and no aux of their own).
func (p *patIndex) matches(v *value, sc *scratch) bool {
	return p.best(v, sc, 1) < 1
}

// best returns the lowest rank below cur of the entries of patterns that
// match v (and whose aux patterns match sc.aux), or cur.
func (p *patIndex) best(v *value, sc *scratch, cur int32) int32 {
	if p == nil || p.min >= cur {
		return cur
	}
	if p.cs.min < cur {
		cur = p.cs.best(v, false, sc, cur)
	}
	if p.fold.min < cur {
		cur = p.fold.best(v, true, sc, cur)
	}
	return cur
}

// best probes the set with v, lower-cased when fold.
func (s *patSet) best(v *value, fold bool, sc *scratch, cur int32) int32 {
	raw := v.raw
	n := len(raw)
	if s.exact != nil && n <= MaxPatternLen {
		k := raw
		if fold {
			k = v.head()
		}
		cur = s.exact[string(k)].best(cur, sc)
	}
	if len(s.prefix.lens) > 0 && s.prefix.lens[0] <= n {
		k := raw
		if fold {
			k = v.head()
		}
		for _, l := range s.prefix.lens {
			if l > n {
				break
			}
			cur = s.prefix.m[string(k[:l])].best(cur, sc)
		}
	}
	if len(s.suffix.lens) > 0 && s.suffix.lens[0] <= n {
		k := raw
		if fold {
			k = v.tail()
		}
		for _, l := range s.suffix.lens {
			if l > n {
				break
			}
			cur = s.suffix.m[string(k[len(k)-l:])].best(cur, sc)
		}
	}
	if s.tmpl != nil {
		cur = s.tmpl.walk(v, 0, fold, sc, cur)
	}
	return cur
}

// walk matches v.raw[start:] (the value's segments from the one at start)
// against the subtree of n. A node's depth fixes the segment it is matched
// with, so each node is visited at most once: the work is bounded by the
// trie's size whatever the value, and the recursion by MaxTemplateSegments.
func (n *tnode) walk(v *value, start int, fold bool, sc *scratch, cur int32) int32 {
	if n.min >= cur {
		return cur
	}
	raw := v.raw
	if len(n.rest) > 0 && start < len(raw) {
		cur = n.rest.best(cur, sc)
	}
	end := len(raw)
	if i := bytes.IndexByte(raw[start:], '/'); i >= 0 {
		end = start + i
	}
	seg := raw[start:end]
	last := end == len(raw)
	var lit *tnode
	if n.lit != nil && len(seg) <= MaxPatternLen {
		if fold {
			lit = n.lit[string(v.lowered(start, end))]
		} else {
			lit = n.lit[string(seg)]
		}
	}
	param := n.param
	if len(seg) == 0 {
		param = nil
	}
	for _, c := range [2]*tnode{lit, param} {
		if c == nil || c.min >= cur {
			continue
		}
		if last {
			cur = c.end.best(cur, sc)
		} else {
			cur = c.walk(v, end+1, fold, sc, cur)
		}
	}
	return cur
}
