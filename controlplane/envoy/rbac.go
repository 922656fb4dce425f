package envoy

import (
	"encoding/binary"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// Stat prefixes of the RBAC per mode. Envoy prefixes the RBAC filter's
// dynamic metadata keys with them ("bulkhead_monitor_shadow_engine_result"),
// which is how an access log entry says the mode it was judged under.
const (
	RulesStatPrefix      = "bulkhead_protect_"
	ShadowPrefixMonitor  = "bulkhead_monitor_"
	ShadowPrefixDiscover = "bulkhead_discover_"
)

// addrSets holds the workload addresses of every segment ("ns/seg") and
// namespace, sorted, with a hash of each set.
type addrSets struct {
	segment   map[string]*addrSet
	namespace map[string]*addrSet

	mu         sync.Mutex // guards the caches below (routes are built concurrently)
	principals map[peerRef]*encodedList[*rbacv3.Principal]
	perms      map[string]*encodedList[*rbacv3.Permission] // by the encoding of a rule's L7Rules
}

// encodedList is a list of messages shared by the policies of a
// compilation, with its encoding as the repeated field of rbacv3.Policy it
// fills (tag and length before each element).
type encodedList[M proto.Message] struct {
	list []M
	enc  []byte
}

func newEncodedList[M proto.Message](field protowire.Number, list []M) (*encodedList[M], error) {
	e := &encodedList[M]{list: list}
	for _, m := range list {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return nil, err
		}
		e.enc = protowire.AppendTag(e.enc, field, protowire.BytesType)
		e.enc = protowire.AppendBytes(e.enc, b)
	}
	return e, nil
}

// Field numbers of the messages rbacPerRoute encodes by hand.
const (
	fieldPolicyPermissions  = 1 // envoy.config.rbac.v3.Policy
	fieldPolicyPrincipals   = 2
	fieldRBACAction         = 1 // envoy.config.rbac.v3.RBAC
	fieldRBACPolicies       = 2
	fieldMapKey             = 1
	fieldMapValue           = 2
	fieldFilterRules        = 1 // envoy.extensions.filters.http.rbac.v3.RBAC
	fieldFilterShadowRules  = 2
	fieldFilterShadowPrefix = 3
	fieldFilterRulesPrefix  = 6
	fieldPerRouteRBAC       = 2 // envoy.extensions.filters.http.rbac.v3.RBACPerRoute
	typeURLRBACPerRoute     = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
)

type addrSet struct {
	ips  []netip.Addr
	hash uint64
}

// peerRef names an address set a rule depends on: 's' + segment key or
// 'n' + namespace.
type peerRef string

func (s *addrSets) lookup(r peerRef) *addrSet {
	if len(r) == 0 {
		return nil
	}
	if r[0] == 's' {
		return s.segment[string(r[1:])]
	}
	return s.namespace[string(r[1:])]
}

// peerRefs lists the address sets the rules of rs that cover port depend
// on, sorted and deduplicated.
func peerRefs(rs []*bulkheadv1.Rule, port uint32) []peerRef {
	var out []peerRef
	for _, r := range rs {
		if _, ok := ruleProtocol(r, port); !ok {
			continue
		}
		for _, p := range r.GetPeers() {
			switch k := p.GetPeer().(type) {
			case *bulkheadv1.Peer_Segment:
				out = append(out, peerRef("s"+k.Segment))
			case *bulkheadv1.Peer_Namespace:
				out = append(out, peerRef("n"+k.Namespace))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// rbacPerRoute builds the RBAC of one inbound port under mode from the
// segment's ingress rules: the rules whose ports include port become
// policies named after them. A rule whose peers resolve to no address
// admits nobody and is left out.
//
// It returns the message and its deterministic encoding, assembled from
// the encodings of the permission and principal lists the policies share
// (so that they are encoded once per compilation, not once per policy); a
// test checks that it equals proto's own deterministic marshalling.
func rbacPerRoute(rules []*bulkheadv1.Rule, port uint32, mode bulkheadv1.Mode, sets *addrSets) (*rbacfilterv3.RBACPerRoute, []byte, error) {
	policies := map[string]*rbacv3.Policy{}
	encs := map[string][]byte{}
	for _, r := range rules {
		protocol, ok := ruleProtocol(r, port)
		if !ok {
			continue
		}
		princ, err := rulePrincipals(r, sets)
		if err != nil {
			return nil, nil, err
		}
		if len(princ.list) == 0 {
			continue
		}
		perms, err := sets.permissionsOf(r, protocol)
		if err != nil {
			return nil, nil, err
		}
		policies[r.GetName()] = &rbacv3.Policy{Permissions: perms.list, Principals: princ.list}
		encs[r.GetName()] = append(slices.Clip(perms.enc), princ.enc...)
	}
	// The encoding, written into one buffer sized first: RBACPerRoute{rbac:
	// RBAC{rules or shadow_rules: RBAC{policies (sorted by name; action
	// ALLOW is 0, not encoded)}, its stat prefix}}.
	names := slices.Sorted(maps.Keys(policies))
	setLen := 0
	for _, name := range names {
		n := entryLen(name, encs[name])
		setLen += lenField(n)
	}
	rs := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: policies}
	var per *rbacfilterv3.RBACPerRoute
	setField, prefixField, prefix := protowire.Number(fieldFilterShadowRules), protowire.Number(fieldFilterShadowPrefix), ShadowPrefixDiscover
	switch mode {
	case bulkheadv1.Mode_MODE_PROTECT:
		per = &rbacfilterv3.RBACPerRoute{Rbac: &rbacfilterv3.RBAC{Rules: rs, RulesStatPrefix: RulesStatPrefix}}
		setField, prefixField, prefix = fieldFilterRules, fieldFilterRulesPrefix, RulesStatPrefix
	case bulkheadv1.Mode_MODE_MONITOR:
		prefix = ShadowPrefixMonitor
		per = &rbacfilterv3.RBACPerRoute{Rbac: &rbacfilterv3.RBAC{ShadowRules: rs, ShadowRulesStatPrefix: prefix}}
	default:
		per = &rbacfilterv3.RBACPerRoute{Rbac: &rbacfilterv3.RBAC{ShadowRules: rs, ShadowRulesStatPrefix: prefix}}
	}
	filterLen := lenField(setLen) + lenField(len(prefix))
	enc := make([]byte, 0, lenField(filterLen))
	enc = appendLenPrefix(enc, fieldPerRouteRBAC, filterLen)
	// Field order: the rules (1 or 2) before their prefix (6 or 3).
	enc = appendSet(enc, setField, setLen, names, encs)
	enc = protowire.AppendTag(enc, prefixField, protowire.BytesType)
	enc = protowire.AppendString(enc, prefix)
	return per, enc, nil
}

// lenField is the size of a length-delimited field of n bytes (field
// numbers below 16 take one byte of tag).
func lenField(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// entryLen is the size of one policies map entry's content.
func entryLen(name string, policy []byte) int { return lenField(len(name)) + lenField(len(policy)) }

func appendLenPrefix(b []byte, field protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// appendSet appends the RBAC message of the sorted policies.
func appendSet(b []byte, field protowire.Number, setLen int, names []string, encs map[string][]byte) []byte {
	b = appendLenPrefix(b, field, setLen)
	for _, name := range names {
		policy := encs[name]
		b = appendLenPrefix(b, fieldRBACPolicies, entryLen(name, policy))
		b = protowire.AppendTag(b, fieldMapKey, protowire.BytesType)
		b = protowire.AppendString(b, name)
		b = protowire.AppendTag(b, fieldMapValue, protowire.BytesType)
		b = protowire.AppendBytes(b, policy)
	}
	return b
}

// ruleProtocol is the protocol r gives port, and whether r covers it.
func ruleProtocol(r *bulkheadv1.Rule, port uint32) (string, bool) {
	for _, p := range r.GetPorts() {
		if p.GetPort() == port {
			if p.GetProtocol() == "" {
				return "tcp", true
			}
			return p.GetProtocol(), true
		}
	}
	return "", false
}

// rulePrincipals maps r's peers: none is anyone; a segment or namespace is
// each of its workloads' addresses; a CIDR is itself. A rule of one peer
// shares the principals of its address set with every other rule naming it
// (messages are immutable once built).
func rulePrincipals(r *bulkheadv1.Rule, sets *addrSets) (*encodedList[*rbacv3.Principal], error) {
	peers := r.GetPeers()
	if len(peers) == 0 {
		return sets.principalsOf(anyPeer)
	}
	if len(peers) == 1 {
		switch k := peers[0].GetPeer().(type) {
		case *bulkheadv1.Peer_Segment:
			return sets.principalsOf(peerRef("s" + k.Segment))
		case *bulkheadv1.Peer_Namespace:
			return sets.principalsOf(peerRef("n" + k.Namespace))
		}
	}
	var prefixes []netip.Prefix
	for _, p := range peers {
		switch k := p.GetPeer().(type) {
		case *bulkheadv1.Peer_Segment:
			prefixes = sets.appendPrefixes(prefixes, peerRef("s"+k.Segment))
		case *bulkheadv1.Peer_Namespace:
			prefixes = sets.appendPrefixes(prefixes, peerRef("n"+k.Namespace))
		case *bulkheadv1.Peer_Cidr:
			if pf, err := netip.ParsePrefix(k.Cidr); err == nil {
				prefixes = append(prefixes, pf.Masked())
			}
		}
	}
	return newEncodedList(fieldPolicyPrincipals, principals(prefixes))
}

// anyPeer names the principal "anyone" in the principals cache.
const anyPeer peerRef = "*"

func (s *addrSets) appendPrefixes(dst []netip.Prefix, r peerRef) []netip.Prefix {
	if set := s.lookup(r); set != nil {
		for _, ip := range set.ips {
			dst = append(dst, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return dst
}

// principalsOf returns the principals of one address set (or anyPeer),
// built and encoded once per compilation.
func (s *addrSets) principalsOf(r peerRef) (*encodedList[*rbacv3.Principal], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.principals[r]; ok {
		return p, nil
	}
	list := []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}}
	if r != anyPeer {
		list = principals(s.appendPrefixes(nil, r))
	}
	p, err := newEncodedList(fieldPolicyPrincipals, list)
	if err != nil {
		return nil, err
	}
	if s.principals == nil {
		s.principals = map[peerRef]*encodedList[*rbacv3.Principal]{}
	}
	s.principals[r] = p
	return p, nil
}

// principals sorts and deduplicates prefixes into direct_remote_ip
// principals.
func principals(prefixes []netip.Prefix) []*rbacv3.Principal {
	slices.SortFunc(prefixes, comparePrefix)
	prefixes = slices.Compact(prefixes)
	out := make([]*rbacv3.Principal, 0, len(prefixes))
	for _, pf := range prefixes {
		out = append(out, &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: &corev3.CidrRange{
			AddressPrefix: pf.Addr().String(),
			PrefixLen:     wrapperspb.UInt32(uint32(pf.Bits())),
		}}})
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// permissionsOf returns rulePermissions(r, proto), shared with every rule
// of the compilation whose L7 matchers are the same (rules learned or
// written alike are common: GET /healthz).
func (s *addrSets) permissionsOf(r *bulkheadv1.Rule, protocol string) (*encodedList[*rbacv3.Permission], error) {
	var buf [256]byte
	key := append(buf[:0], '*') // every request
	if protocol != "tcp" && len(r.GetL7()) > 0 {
		key = l7Key(key[:0], r.GetL7())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.perms[string(key)]; ok {
		return p, nil
	}
	p, err := newEncodedList(fieldPolicyPermissions, rulePermissions(r, protocol))
	if err != nil {
		return nil, err
	}
	if s.perms == nil {
		s.perms = map[string]*encodedList[*rbacv3.Permission]{}
	}
	s.perms[string(key)] = p
	return p, nil
}

// l7Key appends an unambiguous key of ls's content to b: every string
// length-prefixed, every list counted.
func l7Key(b []byte, ls []*bulkheadv1.L7Rule) []byte {
	b = binary.AppendUvarint(b, uint64(len(ls)))
	for _, l := range ls {
		b = binary.AppendUvarint(b, uint64(len(l.GetVerbs())))
		for _, v := range l.GetVerbs() {
			b = appendKeyString(b, v)
		}
		b = appendKeyPatterns(b, l.GetResources())
		b = appendKeyPatterns(b, l.GetAux())
	}
	return b
}

func appendKeyString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendKeyPatterns(b []byte, ps []*bulkheadv1.Pattern) []byte {
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for _, p := range ps {
		kind, v := byte(0), ""
		switch k := p.GetKind().(type) {
		case *bulkheadv1.Pattern_Exact:
			kind, v = 'e', k.Exact
		case *bulkheadv1.Pattern_Prefix:
			kind, v = 'p', k.Prefix
		case *bulkheadv1.Pattern_Suffix:
			kind, v = 's', k.Suffix
		case *bulkheadv1.Pattern_Template:
			kind, v = 't', k.Template
		}
		if p.GetFoldCase() {
			kind -= 'a' - 'A'
		}
		b = appendKeyString(append(b, kind), v)
	}
	return b
}

// rulePermissions maps r's L7 matchers on a port of protocol proto: "tcp"
// or no L7Rule allows every request; otherwise each L7Rule is one
// permission (any of them allows).
func rulePermissions(r *bulkheadv1.Rule, proto string) []*rbacv3.Permission {
	anyReq := []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}}
	if proto == "tcp" || len(r.GetL7()) == 0 {
		return anyReq
	}
	out := make([]*rbacv3.Permission, 0, len(r.GetL7()))
	for _, l := range r.GetL7() {
		out = append(out, l7Permission(l))
	}
	return out
}

// l7Permission is verbs (":method") and resources (the path) and aux
// (":authority", any port); an empty list is anything.
func l7Permission(l *bulkheadv1.L7Rule) *rbacv3.Permission {
	var and []*rbacv3.Permission
	if vs := l.GetVerbs(); len(vs) > 0 {
		or := make([]*rbacv3.Permission, 0, len(vs))
		for _, v := range vs {
			or = append(or, headerPermission(":method", &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v},
			}))
		}
		and = append(and, anyOf(or))
	}
	if ps := l.GetResources(); len(ps) > 0 {
		or := make([]*rbacv3.Permission, 0, len(ps))
		for _, p := range ps {
			or = append(or, &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
				Rule: &matcherv3.PathMatcher_Path{Path: pathMatcher(p)},
			}}})
		}
		and = append(and, anyOf(or))
	}
	if ps := l.GetAux(); len(ps) > 0 {
		or := make([]*rbacv3.Permission, 0, len(ps))
		for _, p := range ps {
			or = append(or, headerPermission(":authority", &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: hostRegex(p)}},
			}))
		}
		and = append(and, anyOf(or))
	}
	switch len(and) {
	case 0:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	case 1:
		return and[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: and}}}
}

func anyOf(or []*rbacv3.Permission) *rbacv3.Permission {
	if len(or) == 1 {
		return or[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: or}}}
}

func headerPermission(name string, m *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
		Name:                 name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m},
	}}}
}

// pathMatcher maps a resource pattern: exact, prefix and suffix as such,
// a template as an anchored regular expression.
func pathMatcher(p *bulkheadv1.Pattern) *matcherv3.StringMatcher {
	fold := p.GetFoldCase()
	switch k := p.GetKind().(type) {
	case *bulkheadv1.Pattern_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: k.Exact}, IgnoreCase: fold}
	case *bulkheadv1.Pattern_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: k.Prefix}, IgnoreCase: fold}
	case *bulkheadv1.Pattern_Suffix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: k.Suffix}, IgnoreCase: fold}
	case *bulkheadv1.Pattern_Template:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: foldPrefix(fold) + "^" + TemplateRegex(k.Template) + "$"},
		}}
	}
	// compile never emits an empty pattern; match nothing rather than all.
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: `[^\s\S]`}}}
}

// hostRegex maps an aux pattern to a regular expression on ":authority"
// that ignores a port, as bulkhead-proxy does with the Host header.
func hostRegex(p *bulkheadv1.Pattern) string {
	var body string
	switch k := p.GetKind().(type) {
	case *bulkheadv1.Pattern_Exact:
		body = regexp.QuoteMeta(k.Exact)
	case *bulkheadv1.Pattern_Prefix:
		body = regexp.QuoteMeta(k.Prefix) + ".*"
	case *bulkheadv1.Pattern_Suffix:
		body = ".*" + regexp.QuoteMeta(k.Suffix)
	case *bulkheadv1.Pattern_Template:
		body = TemplateRegex(k.Template)
	default:
		return `[^\s\S]`
	}
	return foldPrefix(p.GetFoldCase()) + "^" + body + "(:[0-9]+)?$"
}

func foldPrefix(fold bool) string {
	if fold {
		return "(?i)"
	}
	return ""
}

// TemplateRegex is the unanchored RE2 form of a path template as
// bulkhead-proxy matches it: segments split at "/", "{name}" one non-empty
// segment, a final "{*}" the non-empty rest, anything else literal.
func TemplateRegex(tmpl string) string {
	segs := strings.Split(tmpl, "/")
	var b strings.Builder
	for i, s := range segs {
		if i > 0 {
			b.WriteByte('/')
		}
		switch {
		case s == "{*}" && i == len(segs)-1:
			b.WriteString(".+")
		case len(s) > 2 && s[0] == '{' && s[len(s)-1] == '}':
			b.WriteString("[^/]+")
		default:
			b.WriteString(regexp.QuoteMeta(s))
		}
	}
	return b.String()
}
