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
		if e.aux == nil || sc.auxMatches(e.aux) {
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
// it, without scanning the patterns: exact values in a hash table;
// prefixes and suffixes in a hash table keyed by the pattern, probed once
// per distinct pattern length; templates in a segment trie whose nodes
// hold their literal segments in hash tables. Patterns with fold_case are
// kept lower-cased apart and probed with the value folded as it is hashed
// and compared (btab), never copied.
type patIndex struct {
	cs, fold patSet
	min      int32 // lowest rank of any entry
}

type patSet struct {
	exact  btab[entries]
	prefix lenMap
	suffix lenMap
	tmpl   *tnode
	min    int32 // lowest rank in the set; noRank when empty

	exactB map[string]entries // exact while building; nil after finish
}

// lenMap holds prefixes or suffixes keyed by value; lens lists their
// distinct lengths in ascending order.
type lenMap struct {
	lens []int
	t    btab[entries]
	m    map[string]entries // t while building; nil after finish
}

// tnode is a node of a template trie; depth d holds segment d.
type tnode struct {
	lit   btab[*tnode]
	param *tnode  // "{name}": any one non-empty segment
	rest  entries // a "{*}" after this node's segments
	end   entries // templates ending with this node's segment
	min   int32   // lowest rank in the subtree
	// one is the only child when the node has one literal child and no
	// param: the segment is compared with oneKey (folded when fold)
	// rather than hashed and looked up. Chains of such nodes are what a
	// template's literal segments make ("/svc/items/{id}").
	one    *tnode
	oneKey string
	fold   bool

	litB map[string]*tnode // lit while building; nil after finish
}

func (p *patIndex) add(pat pattern, e entry) {
	s := &p.cs
	if pat.fold {
		s = &p.fold
	}
	switch pat.kind {
	case patExact:
		if s.exactB == nil {
			s.exactB = map[string]entries{}
		}
		s.exactB[pat.value] = append(s.exactB[pat.value], e)
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
				if n.litB == nil {
					n.litB = map[string]*tnode{}
				}
				c := n.litB[sg.lit]
				if c == nil {
					c = &tnode{}
					n.litB[sg.lit] = c
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

// finish sorts and prunes what add collected and builds the hash tables;
// the index is then read-only.
func (p *patIndex) finish() {
	p.cs.finish(false)
	p.fold.finish(true)
	p.min = min(p.cs.min, p.fold.min)
}

func (s *patSet) finish(fold bool) {
	s.min = noRank
	for k, es := range s.exactB {
		es = es.normalize()
		s.exactB[k] = es
		s.min = min(s.min, es[0].rank)
	}
	s.exact = newBtab(s.exactB, fold)
	s.exactB = nil
	for _, l := range []*lenMap{&s.prefix, &s.suffix} {
		slices.Sort(l.lens)
		l.lens = slices.Clip(slices.Compact(l.lens))
		for k, es := range l.m {
			es = es.normalize()
			l.m[k] = es
			s.min = min(s.min, es[0].rank)
		}
		l.t = newBtab(l.m, fold)
		l.m = nil
	}
	if s.tmpl != nil {
		s.min = min(s.min, s.tmpl.finish(fold))
	}
}

func (n *tnode) finish(fold bool) int32 {
	n.min = noRank
	if len(n.rest) > 0 {
		n.rest = n.rest.normalize()
		n.min = n.rest[0].rank
	}
	if len(n.end) > 0 {
		n.end = n.end.normalize()
		n.min = min(n.min, n.end[0].rank)
	}
	for _, c := range n.litB {
		n.min = min(n.min, c.finish(fold))
	}
	n.fold = fold
	if len(n.litB) == 1 && n.param == nil {
		for k, c := range n.litB {
			n.one, n.oneKey = c, k // walk compares; no table
		}
	} else {
		n.lit = newBtab(n.litB, fold)
	}
	n.litB = nil
	if n.param != nil {
		n.min = min(n.min, n.param.finish(fold))
	}
	return n.min
}

// scratch is the per-message working state of the generic matcher, on the
// stack of Conn.Message: the resource being judged and the message's aux,
// with their hashes, and the last aux index matched against the aux (an
// L7Rule's aux patterns are matched once per message, not per resource).
type scratch struct {
	res, aux probe
	auxIdx   *patIndex
	auxOK    bool
}

// auxMatches reports whether some pattern of p matches the message's aux.
func (sc *scratch) auxMatches(p *patIndex) bool {
	if p != sc.auxIdx {
		sc.auxIdx, sc.auxOK = p, p.matches(&sc.aux, sc)
	}
	return sc.auxOK
}

// matches reports whether some pattern of p matches v (for aux patterns,
// whose entries have rank 0 and no aux of their own).
func (p *patIndex) matches(v *probe, sc *scratch) bool {
	return p.best(v, sc, 1) < 1
}

// best returns the lowest rank below cur of the entries of patterns that
// match v (and whose aux patterns match sc.aux), or cur.
func (p *patIndex) best(v *probe, sc *scratch, cur int32) int32 {
	if p == nil || p.min >= cur {
		return cur
	}
	if p.cs.min < cur {
		cur = p.cs.best(v, sc, cur)
	}
	if p.fold.min < cur {
		cur = p.fold.best(v, sc, cur)
	}
	return cur
}

// best probes the set with v (folded by the tables of the fold set).
// Patterns are at most MaxPatternLen bytes, so a longer value is probed as
// an exact value not at all and as a prefix or suffix only with its first
// or last bytes.
func (s *patSet) best(p *probe, sc *scratch, cur int32) int32 {
	v := p.b
	n := len(v)
	if n <= MaxPatternLen && len(s.exact.keys.slots) > 0 {
		fold := s.exact.keys.fold
		h := p.h[boolIndex(fold)] // p.hash(fold), inline
		if h == 0 && !s.exact.keys.small {
			if n > 0 && n <= 8 {
				h = p.fillShort(fold)
			} else {
				h = p.fill(fold)
			}
		}
		if es, ok := s.exact.getH(v, h, p.w); ok {
			cur = es.best(cur, sc)
		}
	}
	if len(s.prefix.lens) > 0 && s.prefix.lens[0] <= n {
		for _, l := range s.prefix.lens {
			if l > n {
				break
			}
			if es, ok := s.prefix.t.get(v[:l]); ok {
				cur = es.best(cur, sc)
			}
		}
	}
	if len(s.suffix.lens) > 0 && s.suffix.lens[0] <= n {
		for _, l := range s.suffix.lens {
			if l > n {
				break
			}
			if es, ok := s.suffix.t.get(v[n-l:]); ok {
				cur = es.best(cur, sc)
			}
		}
	}
	if s.tmpl != nil {
		cur = s.tmpl.walk(v, 0, sc, cur)
	}
	return cur
}

// walk matches v[start:] (the value's segments from the one at start)
// against the subtree of n. A node's depth fixes the segment it is matched
// with, so each node is visited at most once: the work is bounded by the
// trie's size whatever the value, and the recursion by MaxTemplateSegments.
func (n *tnode) walk(v []byte, start int, sc *scratch, cur int32) int32 {
	if n.min >= cur {
		return cur
	}
	if len(n.rest) > 0 && start < len(v) {
		cur = n.rest.best(cur, sc)
	}
	if c := n.one; c != nil {
		k := n.oneKey
		end := start + len(k)
		if end > len(v) || (end < len(v) && v[end] != '/') || c.min >= cur {
			return cur
		}
		if n.fold {
			if !eqFold(k, v[start:end]) {
				return cur
			}
		} else if k != string(v[start:end]) {
			return cur
		}
		if end == len(v) {
			return c.end.best(cur, sc)
		}
		return c.walk(v, end+1, sc, cur)
	}
	end := len(v)
	if i := bytes.IndexByte(v[start:], '/'); i >= 0 {
		end = start + i
	}
	seg := v[start:end]
	last := end == len(v)
	var lit *tnode
	if len(seg) <= MaxPatternLen {
		lit, _ = n.lit.get(seg)
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
			cur = c.walk(v, end+1, sc, cur)
		}
	}
	return cur
}
