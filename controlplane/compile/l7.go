package compile

import (
	"cmp"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile/vocab"
	"github.com/bulkhead-io/bulkhead/protocols/http1"
)

// compileL7 maps the typed L7 matchers of r (in export form) to the data
// plane's generic L7Rules, in the order http, grpc, tls, dns, sql, kafka,
// memcached, mongodb; nil when r has none (Redis has its own message).
//
// Each matcher becomes one L7Rule whose verbs, resources and aux are the
// cross product of its lists (an empty list: anything), with the meanings of
// the table "L7 frames, per protocol" in docs/contracts.md. A matcher that
// restricts resources (sql tables, kafka topics, memcached key prefixes,
// mongodb collections) and lists verbs adds a second L7Rule without resource
// patterns for those of its verbs whose messages never name a resource
// (Kafka ApiVersions, Heartbeat…, SQL BEGIN, COMMIT…): the data plane
// matches a message that names no resource only against L7Rules without
// resource patterns.
//
// L7Rules carry no protocol: the data plane applies all of a rule's L7Rules
// on each of its ports of a parsed protocol other than Redis. A rule whose
// ports mix such protocols (http and mysql) therefore judges each port's
// messages by the other protocols' matchers too, and a port whose protocol
// has no matcher in the rule is not "every message" there.
func compileL7(r *v1alpha1.Rule) []*bulkheadv1.L7Rule {
	var out []*bulkheadv1.L7Rule
	if m := r.HTTP; m != nil {
		res := make([]*bulkheadv1.Pattern, 0, len(m.Paths))
		for _, p := range m.Paths {
			res = append(res, pathPattern(p))
		}
		out = append(out, l7Rule(m.Methods, res, hostPatterns(m.Hosts)))
	}
	if m := r.GRPC; m != nil {
		res := make([]*bulkheadv1.Pattern, 0, len(m.Methods))
		for _, meth := range m.Methods {
			if svc, ok := strings.CutSuffix(meth, "/*"); ok {
				res = append(res, prefix("/"+svc+"/", false))
			} else {
				res = append(res, exact("/"+meth, false))
			}
		}
		out = append(out, l7Rule([]string{"POST"}, res, nil))
	}
	if m := r.TLS; m != nil {
		out = append(out, l7Rule([]string{"CLIENT_HELLO"}, hostPatterns(m.ServerNames), nil))
	}
	if m := r.DNS; m != nil {
		out = append(out, l7Rule(m.Types, hostPatterns(m.Names), nil))
	}
	if m := r.SQL; m != nil {
		res := make([]*bulkheadv1.Pattern, 0, len(m.Tables))
		for _, t := range m.Tables {
			if schema, ok := strings.CutSuffix(t, ".*"); ok {
				res = append(res, prefix(schema+".", true))
			} else {
				res = append(res, exact(t, true))
			}
		}
		out = append(out, withResourceless("sql", m.Verbs, res, exacts(m.Databases, true))...)
	}
	if m := r.Kafka; m != nil {
		verbs := slices.Clone(m.APIs)
		for _, role := range m.Roles {
			verbs = append(verbs, vocab.KafkaRoleAPIs(role)...)
		}
		res := make([]*bulkheadv1.Pattern, 0, len(m.Topics))
		for _, t := range m.Topics {
			if p, ok := strings.CutSuffix(t, "*"); ok {
				res = append(res, prefix(p, false))
			} else {
				res = append(res, exact(t, false))
			}
		}
		out = append(out, withResourceless("kafka", verbs, res, exacts(m.ClientIDs, false))...)
	}
	if m := r.Memcached; m != nil {
		// Patterns are literal: "session:*" is the prefix "session:", and a
		// prefix that is only '*' allows every key.
		res := make([]*bulkheadv1.Pattern, 0, len(m.KeyPrefixes))
		for _, p := range m.KeyPrefixes {
			p = strings.TrimRight(p, "*")
			if p == "" {
				res = nil
				break
			}
			res = append(res, prefix(p, false))
		}
		out = append(out, withResourceless("memcached", m.Commands, res, nil)...)
	}
	if m := r.MongoDB; m != nil {
		out = append(out, withResourceless("mongodb", m.Commands, exacts(m.Collections, false), exacts(m.Databases, false))...)
	}
	return out
}

// withResourceless returns the L7Rule of verbs × res × aux and, when res and
// verbs are both restricted, one of the verbs that never name a resource ×
// aux.
func withResourceless(matcher string, verbs []string, res, aux []*bulkheadv1.Pattern) []*bulkheadv1.L7Rule {
	out := []*bulkheadv1.L7Rule{l7Rule(verbs, res, aux)}
	if len(res) == 0 || len(verbs) == 0 {
		return out
	}
	var bare []string
	for _, v := range verbs {
		if vocab.Resourceless(matcher, v) {
			bare = append(bare, v)
		}
	}
	if len(bare) > 0 {
		out = append(out, l7Rule(bare, nil, aux))
	}
	return out
}

// l7Rule builds an L7Rule with verbs upper-cased, and verbs and patterns
// sorted and deduplicated.
func l7Rule(verbs []string, res, aux []*bulkheadv1.Pattern) *bulkheadv1.L7Rule {
	r := &bulkheadv1.L7Rule{Resources: sortPatterns(res), Aux: sortPatterns(aux)}
	if len(verbs) > 0 {
		r.Verbs = make([]string, len(verbs))
		for i, v := range verbs {
			r.Verbs[i] = strings.ToUpper(v)
		}
		slices.Sort(r.Verbs)
		r.Verbs = slices.Compact(r.Verbs)
	}
	return r
}

// pathPattern maps an HTTPMatch path: "/x" exact, "/x/*" prefix "/x/",
// "/x/{id}" and "/x/{*}" templates, in the normal form of the paths the
// data plane matches them against (normalPath).
func pathPattern(p string) *bulkheadv1.Pattern {
	switch kind, v := vocab.ClassifyPath(normalPath(p)); kind {
	case vocab.PathPrefix:
		return prefix(v, false)
	case vocab.PathTemplate:
		return &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Template{Template: v}}
	default:
		return exact(v, false)
	}
}

// normalPath brings a valid HTTPMatch path pattern to the form in which the
// http parser reports request paths (http1.AppendNormalizedPath):
// percent-decoded but for the bytes kept encoded, which are written %XX in
// upper case ("/caf%c3%a9" and "/café" are "/caf%C3%A9", "/%61dmin" is
// "/admin"), dot-segments resolved, repeated slashes folded, ";" parameters
// dropped. A pattern written in another form would never match: the
// parser's paths are always normal. Template parameters ("{id}", "{*}")
// and a prefix's final "*" are literal bytes the normalisation keeps.
//
// Before normalising, bytes the parser never sees raw in a request line
// (>= 0x80, as in "/café") are percent-encoded, and a "%" that starts no
// %XX escape is taken for itself ("%25"). A pattern whose normal form the
// parser would refuse (an encoded NUL, an encoded slash beside a
// dot-segment), that grows beyond v1alpha1.MaxPathPattern, or whose
// normalisation would add or remove a "{", "}" or "*" (a "%7B" decoded into
// a template parameter, a parameter before "..") is kept as written: no
// normal path equals it, so it matches nothing, which is what a rule for
// requests the parser refuses, or cannot be written as a pattern, can
// match. Patterns cannot name a path with a literal brace or star.
func normalPath(p string) string {
	raw := make([]byte, 0, len(p)+16)
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c >= 0x80:
			raw = append(raw, '%', upperHex[c>>4], upperHex[c&15])
		case c == '%' && !(i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2])):
			raw = append(raw, "%25"...)
		default:
			raw = append(raw, c)
		}
	}
	norm, err := http1.AppendNormalizedPath(nil, raw)
	if err != nil || len(norm) > v1alpha1.MaxPathPattern {
		return p
	}
	for _, c := range "{}*" {
		if strings.Count(string(norm), string(c)) != strings.Count(p, string(c)) {
			// A decoded "%7B" would turn into a template parameter (or
			// a literal brace the data plane refuses in a template), and
			// a dot-segment would drop one: a pattern of the structure
			// written or none.
			return p
		}
	}
	return string(norm)
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// hostPatterns maps host names (exact, or "*.suffix" for suffix ".suffix"),
// case-insensitive; a final dot is dropped, since parsers report names
// without it.
func hostPatterns(hosts []string) []*bulkheadv1.Pattern {
	out := make([]*bulkheadv1.Pattern, 0, len(hosts))
	for _, h := range hosts {
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		if s, ok := strings.CutPrefix(h, "*"); ok {
			out = append(out, &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Suffix{Suffix: s}, FoldCase: true})
		} else {
			out = append(out, exact(h, true))
		}
	}
	return out
}

func exacts(vals []string, fold bool) []*bulkheadv1.Pattern {
	out := make([]*bulkheadv1.Pattern, 0, len(vals))
	for _, v := range vals {
		out = append(out, exact(v, fold))
	}
	return out
}

func exact(v string, fold bool) *bulkheadv1.Pattern {
	return &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Exact{Exact: v}, FoldCase: fold}
}

func prefix(v string, fold bool) *bulkheadv1.Pattern {
	return &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Prefix{Prefix: v}, FoldCase: fold}
}

// patternKey orders patterns: exact, prefix, suffix, template, then by
// value, then case-sensitive first.
func patternKey(p *bulkheadv1.Pattern) (int, string, bool) {
	switch k := p.GetKind().(type) {
	case *bulkheadv1.Pattern_Exact:
		return 0, k.Exact, p.GetFoldCase()
	case *bulkheadv1.Pattern_Prefix:
		return 1, k.Prefix, p.GetFoldCase()
	case *bulkheadv1.Pattern_Suffix:
		return 2, k.Suffix, p.GetFoldCase()
	case *bulkheadv1.Pattern_Template:
		return 3, k.Template, p.GetFoldCase()
	}
	return 4, "", p.GetFoldCase()
}

func comparePatterns(a, b *bulkheadv1.Pattern) int {
	ak, av, af := patternKey(a)
	bk, bv, bf := patternKey(b)
	c := cmp.Or(cmp.Compare(ak, bk), strings.Compare(av, bv))
	if c != 0 || af == bf {
		return c
	}
	if af {
		return 1
	}
	return -1
}

// sortPatterns sorts and deduplicates ps in place; nil when empty.
func sortPatterns(ps []*bulkheadv1.Pattern) []*bulkheadv1.Pattern {
	if len(ps) == 0 {
		return nil
	}
	slices.SortFunc(ps, comparePatterns)
	return slices.CompactFunc(ps, func(a, b *bulkheadv1.Pattern) bool { return comparePatterns(a, b) == 0 })
}
