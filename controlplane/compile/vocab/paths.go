// Package vocab holds the protocol knowledge that compile, learn and the
// store's merge of learned rules share: HTTP path patterns (their forms,
// which covers which, how observed paths generalise into templates), Kafka
// API names and roles, MongoDB command names, and the verbs of each protocol
// that never name a resource.
//
// It is pure: no state, no I/O; every function is deterministic.
package vocab

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// PathKind is the form of an HTTPMatch path pattern.
type PathKind uint8

const (
	// PathExact matches one path: "/healthz".
	PathExact PathKind = iota
	// PathPrefix matches the paths under a folder: "/static/*".
	PathPrefix
	// PathTemplate matches paths segment by segment: "/users/{id}" ("{name}"
	// is one non-empty segment), "/files/{*}" (a final "{*}" is one or more
	// segments).
	PathTemplate
)

// IDSegment is the template segment learning puts where an identifier was.
const IDSegment = "{id}"

// restSegment is a template's final "any further segments".
const restSegment = "{*}"

// ClassifyPath tells how a valid HTTPMatch path pattern matches and the value
// the data plane's Pattern carries for it: "/x/*" is PathPrefix "/x/", a
// pattern with a "{name}" or final "{*}" segment is PathTemplate (itself),
// anything else PathExact (itself).
func ClassifyPath(p string) (PathKind, string) {
	switch {
	case strings.HasSuffix(p, "/*"):
		return PathPrefix, p[:len(p)-1]
	case strings.Contains(p, "{"):
		return PathTemplate, p
	}
	return PathExact, p
}

// pathPat is a parsed path pattern.
type pathPat struct {
	orig   string
	kind   PathKind
	prefix string   // PathPrefix: "/x/"
	segs   []string // PathExact, PathTemplate: the segments, without a final "{*}"
	rest   bool     // PathTemplate ending in "{*}"
}

func parsePath(p string) pathPat {
	kind, v := ClassifyPath(p)
	pp := pathPat{orig: p, kind: kind}
	if kind == PathPrefix {
		pp.prefix = v
		return pp
	}
	pp.segs = strings.Split(strings.TrimPrefix(p, "/"), "/")
	if kind == PathTemplate && pp.segs[len(pp.segs)-1] == restSegment {
		pp.segs = pp.segs[:len(pp.segs)-1]
		pp.rest = true
	}
	return pp
}

func (p pathPat) hasParam() bool {
	if p.rest {
		return true
	}
	for _, s := range p.segs {
		if isParam(s) {
			return true
		}
	}
	return false
}

func (p pathPat) String() string {
	if p.kind == PathPrefix {
		return p.orig
	}
	s := "/" + strings.Join(p.segs, "/")
	if p.rest {
		if len(p.segs) == 0 {
			return "/" + restSegment
		}
		s += "/" + restSegment
	}
	return s
}

// isParam reports whether a template segment is "{name}".
func isParam(seg string) bool {
	return len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' && seg != restSegment
}

// fixedPrefix is the literal start every path matched by a template shares.
func (p pathPat) fixedPrefix() string {
	var b strings.Builder
	b.WriteByte('/')
	for _, s := range p.segs {
		if isParam(s) {
			return b.String()
		}
		b.WriteString(s)
		b.WriteByte('/')
	}
	if p.rest {
		return b.String()
	}
	return p.orig // no parameter at all: the template is one path
}

// PathCovers reports whether path pattern a matches every path that pattern
// b matches. It errs towards false: a false answer only keeps a redundant
// pattern.
func PathCovers(a, b string) bool {
	return covers(parsePath(a), parsePath(b))
}

func covers(a, b pathPat) bool {
	switch a.kind {
	case PathExact:
		return b.kind != PathPrefix && !b.hasParam() && a.orig == b.String()
	case PathPrefix:
		switch b.kind {
		case PathPrefix:
			return strings.HasPrefix(b.prefix, a.prefix)
		case PathTemplate:
			return strings.HasPrefix(b.fixedPrefix(), a.prefix)
		}
		return strings.HasPrefix(b.orig, a.prefix)
	}
	if b.kind == PathPrefix {
		return false
	}
	n := len(a.segs)
	if a.rest {
		// "{*}" is one or more further segments.
		if len(b.segs) <= n && !(b.rest && len(b.segs) == n) {
			return false
		}
	} else if b.rest || len(b.segs) != n {
		return false
	}
	for i := range n {
		as, bs := a.segs[i], b.segs[i]
		if isParam(as) {
			if bs == "" {
				return false
			}
			continue
		}
		if isParam(bs) || as != bs {
			return false
		}
	}
	return true
}

// GeneralizePath turns an observed request path into the pattern learning
// keeps: the query and fragment dropped, every identifier-like segment (see
// IDLike) and every segment a pattern cannot carry literally (braces, '*',
// spaces, control bytes, invalid UTF-8) replaced by "{id}". A truncated path
// (a flow carries at most a bounded prefix of it) loses its last, possibly
// partial, segment and ends in "{*}"; so does a template of more than
// MaxTemplateSegments segments at that bound. It returns false for a path
// that does not start with "/", and for a truncated path without a whole
// segment.
func GeneralizePath(path string, truncated bool) (string, bool) {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path, truncated = path[:i], false
	}
	if path == "" || path[0] != '/' {
		return "", false
	}
	p := pathPat{kind: PathExact, segs: strings.Split(path[1:], "/")}
	if truncated {
		// Without one whole segment, "/{*}" would allow nearly any path.
		if len(p.segs) < 2 {
			return "", false
		}
		p.segs = p.segs[:len(p.segs)-1]
		p.rest = true
		p.kind = PathTemplate
	}
	for i, s := range p.segs {
		if s != "" && (IDLike(s) || !literalSegment(s)) {
			p.segs[i] = IDSegment
			p.kind = PathTemplate
		}
	}
	if p.kind == PathTemplate && len(p.segs)+btoi(p.rest) > MaxTemplateSegments {
		p.segs, p.rest = p.segs[:MaxTemplateSegments-1], true
	}
	return p.String(), true
}

// MaxTemplateSegments bounds the segments of a template GeneralizePath
// returns: a longer path keeps its first MaxTemplateSegments-1 segments and
// ends in "{*}". The data plane refuses templates of more than 64 parts
// split at "/", the empty one before the leading "/" included.
const MaxTemplateSegments = 63

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// literalSegment reports whether a template can carry s as a literal.
func literalSegment(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '{' || c == '}' || c == '*' || c == '?' || c == '#' {
			return false
		}
	}
	return true
}

// IDLike reports whether a path segment looks like an identifier rather
// than a name: all digits, a UUID, at least 8 hex digits with a digit among
// them, or a random-looking token (16 or more base64url characters in which
// letters and digits alternate at least three times).
func IDLike(s string) bool {
	if s == "" {
		return false
	}
	digits, hex := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isDigit(c) {
			digits++
		}
		if isHex(c) {
			hex++
		}
	}
	switch {
	case digits == len(s):
		return true
	case isUUID(s):
		return true
	case len(s) >= 8 && hex == len(s) && digits > 0:
		return true
	}
	return randomToken(s)
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isHex(c byte) bool    { return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f') }

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// randomToken: at least 16 characters of [A-Za-z0-9_=-] with at least three
// places where a letter and a digit meet. Words with a number at their end
// ("report-2024", "getUserV2") do not qualify; base64 tokens almost always do.
func randomToken(s string) bool {
	if len(s) < 16 {
		return false
	}
	switches := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) && !isLetter(c) && c != '_' && c != '-' && c != '=' {
			return false
		}
		if i > 0 {
			p := s[i-1]
			if (isDigit(p) && isLetter(c)) || (isLetter(p) && isDigit(c)) {
				switches++
			}
		}
	}
	return switches >= 3
}

// Defaults for CollapsePaths as learning uses it.
const (
	// CollapseThreshold: more paths than this that differ at one segment
	// position only become one template.
	CollapseThreshold = 8
	// MaxLearnedPaths bounds the paths of one learned rule.
	MaxLearnedPaths = 64
)

// CollapsePaths returns the smallest set of patterns equivalent to paths
// under learning's generalisation, sorted:
//   - a pattern that another one covers is dropped (of two equivalent
//     templates the smaller string stays);
//   - when more than threshold exact or template paths have the same number
//     of segments and differ only at one position, that position becomes
//     "{id}" in all of them (repeated until nothing changes);
//   - when more than max patterns remain, paths of two or more segments that
//     share a first segment become "/first/{*}"; if that is still more than
//     max, the result is nil: any path.
//
// Empty input gives nil. The result is a fixed point: CollapsePaths of it
// (with the same threshold and max) is itself.
func CollapsePaths(paths []string, threshold, max int) []string {
	if len(paths) == 0 {
		return nil
	}
	pats := make([]pathPat, 0, len(paths))
	for _, p := range paths {
		pats = append(pats, parsePath(p))
	}
	pats = minimize(pats)
	for collapseOnce(pats, threshold) {
		pats = minimize(pats)
	}
	if len(pats) > max {
		pats = minimize(byFirstSegment(pats))
		if len(pats) > max {
			return nil
		}
	}
	out := make([]string, len(pats))
	for i, p := range pats {
		out[i] = p.String()
	}
	return out
}

// minimize sorts and deduplicates pats and drops every pattern another one
// covers.
func minimize(pats []pathPat) []pathPat {
	for i := range pats {
		pats[i] = parsePath(pats[i].String())
	}
	slices.SortFunc(pats, func(a, b pathPat) int { return strings.Compare(a.orig, b.orig) })
	pats = slices.CompactFunc(pats, func(a, b pathPat) bool { return a.orig == b.orig })
	keep := pats[:0:0]
	for i, p := range pats {
		dropped := false
		for j, q := range pats {
			if i == j || !covers(q, p) {
				continue
			}
			// Equivalent patterns: the smaller string stays.
			if covers(p, q) && i < j {
				continue
			}
			dropped = true
			break
		}
		if !dropped {
			keep = append(keep, p)
		}
	}
	return keep
}

// collapseOnce replaces, at the first segment position where more than
// threshold paths differ only there, those segments by "{id}". It reports
// whether it changed anything.
func collapseOnce(pats []pathPat, threshold int) bool {
	type groupKey struct {
		n, pos int
		others string
	}
	groups := make(map[groupKey]map[string]bool)
	var order []groupKey
	for _, p := range pats {
		if p.kind == PathPrefix || p.rest {
			continue
		}
		for i, s := range p.segs {
			if s == "" || isParam(s) {
				continue
			}
			k := groupKey{len(p.segs), i, othersKey(p.segs, i)}
			g := groups[k]
			if g == nil {
				g = make(map[string]bool)
				groups[k] = g
				order = append(order, k)
			}
			g[s] = true
		}
	}
	slices.SortFunc(order, func(a, b groupKey) int {
		if a.n != b.n {
			return a.n - b.n
		}
		if a.pos != b.pos {
			return a.pos - b.pos
		}
		return strings.Compare(a.others, b.others)
	})
	for _, k := range order {
		if len(groups[k]) <= threshold {
			continue
		}
		for i := range pats {
			p := &pats[i]
			if p.kind == PathPrefix || p.rest || len(p.segs) != k.n || !groups[k][p.segs[k.pos]] || othersKey(p.segs, k.pos) != k.others {
				continue
			}
			segs := slices.Clone(p.segs)
			segs[k.pos] = IDSegment
			*p = pathPat{kind: PathTemplate, segs: segs}
			p.orig = p.String()
		}
		return true
	}
	return false
}

func othersKey(segs []string, pos int) string {
	var b strings.Builder
	for i, s := range segs {
		if i == pos {
			b.WriteString("\x00")
		} else {
			b.WriteString(s)
		}
		b.WriteString("/")
	}
	return b.String()
}

// byFirstSegment folds the paths of two or more segments that share their
// first segment into "/first/{*}".
func byFirstSegment(pats []pathPat) []pathPat {
	count := make(map[string]int)
	deep := func(p pathPat) bool {
		return p.kind != PathPrefix && (len(p.segs) >= 2 || (p.rest && len(p.segs) >= 1)) && p.segs[0] != ""
	}
	for _, p := range pats {
		if deep(p) {
			count[p.segs[0]]++
		}
	}
	out := make([]pathPat, 0, len(pats))
	for _, p := range pats {
		if deep(p) && count[p.segs[0]] > 1 {
			q := pathPat{kind: PathTemplate, segs: []string{p.segs[0]}, rest: true}
			q.orig = q.String()
			out = append(out, q)
			continue
		}
		out = append(out, p)
	}
	return out
}
