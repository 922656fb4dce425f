// Package learn turns the flows of discover-mode segments into learned
// rules and merges them into the store.
//
// An ingress flow becomes a rule of the destination segment's policy, an
// egress flow a rule of the source segment's; either only while that segment
// is in discover mode, both as the proxy judged it (Flow.Mode) and as the
// store says now. A rule allows one peer (a segment; for an egress flow to an
// address that is no workload, the DNS name the workload resolved it from,
// Flow.dst_name, as an FQDN peer; else an unknown address as a /32 or /128
// CIDR) on one port and protocol, with the typed matcher of its
// protocol built from the flow's verb, resources and aux (see
// docs/contracts.md, "L7 frames, per protocol"):
//
//   - redis: the commands seen, lower case, "verb|sub" for commands with
//     sub-commands;
//   - http, http2: per method, the paths seen, generalised (identifier-like
//     segments become "{id}", see vocab.GeneralizePath; the store folds
//     high-cardinality segments into templates), and the hosts when
//     requests carry one; on http2, POSTs to "/package.Service/Method"
//     paths are gRPC calls and teach a grpc matcher instead;
//   - mysql, postgres: per verb, the tables and the database;
//   - kafka: per API (as apis, never roles), the topics and client ids;
//   - mongodb: per command, the collections and the database;
//   - dns: the names and query types; tls: the server names (SNI);
//     memcached: the commands (never keys: key prefixes are a person's
//     choice).
//
// Protocols learned per verb get one rule per verb (from-cart-http-8080-get),
// so that uniting the values of several flows in one rule does not allow
// verbs on resources never seen together with them. A value a flow lacks
// (no Host header, a statement naming no table) makes that list empty: any.
// Learning is idempotent: flows already covered change nothing.
package learn

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile/vocab"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

// MaxName bounds a learned rule's name, leaving room for
// store.LearnedSuffix within the 128 characters a rule name may have.
const MaxName = 128 - len(store.LearnedSuffix)

// Store is what a Learner reads and writes: the methods of *store.Store it
// uses, with their signatures, so that a store kept elsewhere (the
// Kubernetes API) can take its place.
type Store interface {
	// EffectiveMode is the mode a segment is in: its policy's, else the
	// namespace's or default.
	EffectiveMode(ns, name string) v1alpha1.Mode
	// Get returns a copy of a policy, or false.
	Get(ns, name string) (*v1alpha1.SegmentPolicy, bool)
	// MergeLearned merges learned rules into one direction of a policy,
	// creating it when absent; false means nothing changed.
	MergeLearned(ns, name string, dir store.Direction, rules []v1alpha1.Rule) (bool, error)
}

var _ Store = (*store.Store)(nil)

// Learner merges learned rules into a store. It is safe for concurrent use.
type Learner struct {
	st      Store
	log     *slog.Logger
	now     func() time.Time
	refused func(node string, f *bulkheadv1.Flow, reason string)
	metrics *metrics
}

// Options are a Learner's optional parts; the zero value is usable.
type Options struct {
	// Registerer receives bulkhead_learn_refused_total. Nil: none.
	Registerer prometheus.Registerer
	// Now is the clock learning windows are judged by. Nil: time.Now.
	Now func() time.Time
	// Refused, when set, is called for every flow a policy's learning
	// bounds refused (reason: v1alpha1.Refused…), e.g. to list it as a
	// violation. f must not be kept or changed.
	Refused func(node string, f *bulkheadv1.Flow, reason string)
}

// New returns a Learner that writes to st. A nil log discards.
func New(st Store, log *slog.Logger) *Learner { return NewWithOptions(st, log, Options{}) }

// NewWithOptions is New with options.
func NewWithOptions(st Store, log *slog.Logger, o Options) *Learner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Learner{st: st, log: log, now: o.Now, refused: o.Refused, metrics: newMetrics(o.Registerer)}
}

// target is one direction of one policy.
type target struct {
	ns, name string
	dir      store.Direction
}

// Observe learns from one batch of flows reported by node. Flows that teach
// nothing are skipped: not in discover mode, denied, already allowed by a
// rule, of an unknown segment, protocol or port, flows of a parsed protocol
// without a verb (a bare connection would otherwise allow every message),
// and flows whose values no matcher can hold. Flows the policy's
// spec.learning refuses (outside its window; from: enforced and a peer
// not in monitor or protect) are counted, logged and passed to
// Options.Refused. Each new rule records its first teacher (learnedFrom).
// The rules of each policy are merged with one store write.
func (l *Learner) Observe(node string, flows []*bulkheadv1.Flow) {
	groups := make(map[target][]v1alpha1.Rule)
	seen := make(map[string]bool)           // rules already taken from this batch
	modes := make(map[string]v1alpha1.Mode) // by segment key, asked once per batch
	bounds := make(map[string]*v1alpha1.Learning)
	refused := make(map[[2]string]int) // by policy and reason
	mode := func(ns, name string) v1alpha1.Mode {
		k := ns + "/" + name
		m, ok := modes[k]
		if !ok {
			m = l.st.EffectiveMode(ns, name)
			modes[k] = m
		}
		return m
	}
	now := l.now()
	var skipped int
	for _, f := range flows {
		tg, r, key, peer, ok := l.learnable(f)
		if !ok {
			skipped++
			continue
		}
		pkey := tg.ns + "/" + tg.name
		if mode(tg.ns, tg.name) != v1alpha1.ModeDiscover {
			skipped++
			continue
		}
		lb, asked := bounds[pkey]
		if !asked {
			if p, ok := l.st.Get(tg.ns, tg.name); ok {
				lb = p.Spec.Learning
			}
			bounds[pkey] = lb
		}
		if reason := refusal(lb, now, peer, mode); reason != "" {
			refused[[2]string{pkey, reason}]++
			l.metrics.refused.WithLabelValues(reason).Inc()
			if l.refused != nil {
				l.refused(node, f, reason)
			}
			continue
		}
		if key = pkey + "\x00" + tg.dir.String() + "\x00" + key; seen[key] {
			continue
		}
		seen[key] = true
		r.LearnedFrom = provenance(node, peer, f)
		groups[tg] = append(groups[tg], *r)
	}
	for k, n := range refused {
		l.log.Warn("learn: flows refused by the policy's learning bounds", "node", node, "policy", k[0], "reason", k[1], "flows", n)
	}

	targets := make([]target, 0, len(groups))
	for tg := range groups {
		targets = append(targets, tg)
	}
	slices.SortFunc(targets, func(a, b target) int {
		return cmp.Or(strings.Compare(a.ns, b.ns), strings.Compare(a.name, b.name), cmp.Compare(a.dir, b.dir))
	})
	for _, tg := range targets {
		rules := groups[tg]
		slices.SortStableFunc(rules, func(a, b v1alpha1.Rule) int { return strings.Compare(a.Name, b.Name) })
		changed, err := l.st.MergeLearned(tg.ns, tg.name, tg.dir, rules)
		if errors.Is(err, store.ErrFull) {
			l.metrics.refused.WithLabelValues(RefusedStoreFull).Inc()
		}
		if err != nil {
			l.log.Warn("learn: cannot merge learned rules", "node", node, "policy", tg.ns+"/"+tg.name, "direction", tg.dir, "err", err)
			continue
		}
		if changed {
			names := 1
			for i := 1; i < len(rules); i++ {
				if rules[i].Name != rules[i-1].Name {
					names++
				}
			}
			l.log.Info("learn: rules learned", "node", node, "policy", tg.ns+"/"+tg.name, "direction", tg.dir, "rules", names)
		}
	}
	if skipped > 0 {
		l.log.Debug("learn: flows skipped", "node", node, "skipped", skipped, "flows", len(flows))
	}
}

// How flows carry L7 detail (bulkheadv1.Flow, dataplane/report): a resource
// (each of more_resources too) has at most MaxFlowResource bytes, aux at most
// MaxFlowAux; a longer field is cut and ends in Cut, within its bound (a few
// bytes less where the cut falls inside a UTF-8 sequence); when a message
// named more resources than a flow carries, the last of more_resources is
// Cut.
const (
	MaxFlowResource = 256
	MaxFlowAux      = 128
	Cut             = "..."
)

// wasCut reports whether a field with the given bound was cut.
func wasCut(v string, bound int) bool {
	return strings.HasSuffix(v, Cut) && len(v) >= bound-len(Cut)-utf8.UTFMax
}

// learnable returns the policy a flow teaches, the rule it teaches, a key
// that is equal for flows teaching the same rule and the peer's segment key
// ("" for an address without one), or false. It checks everything but the
// store's mode and the policy's learning bounds.
func (l *Learner) learnable(f *bulkheadv1.Flow) (target, *v1alpha1.Rule, string, string, bool) {
	tg, r, key, ok := l.learnableRule(f)
	if !ok {
		return target{}, nil, "", "", false
	}
	peer := f.SrcSegment
	if tg.dir == store.Egress {
		peer = f.DstSegment
	}
	return tg, r, key, peer, true
}

// learnableRule is learnable without the peer.
func (l *Learner) learnableRule(f *bulkheadv1.Flow) (target, *v1alpha1.Rule, string, bool) {
	if f == nil || f.Mode != bulkheadv1.Mode_MODE_DISCOVER || f.Verdict == bulkheadv1.Verdict_VERDICT_DENY || f.Rule != "" {
		return target{}, nil, "", false
	}
	var own, peerSeg, peerIP, prefix string
	var tg target
	switch f.Direction {
	case bulkheadv1.Direction_DIRECTION_INGRESS:
		own, peerSeg, peerIP, prefix, tg.dir = f.DstSegment, f.SrcSegment, f.SrcIp, "from-", store.Ingress
	case bulkheadv1.Direction_DIRECTION_EGRESS:
		own, peerSeg, peerIP, prefix, tg.dir = f.SrcSegment, f.DstSegment, f.DstIp, "to-", store.Egress
	default:
		return target{}, nil, "", false
	}
	var ok bool
	if tg.ns, tg.name, ok = splitKey(own); !ok {
		return target{}, nil, "", false
	}
	if f.DstPort < 1 || f.DstPort > 65535 {
		return target{}, nil, "", false
	}
	proto := strings.ToLower(f.Protocol)
	if proto == "" {
		proto = v1alpha1.ProtocolTCP
	}
	if !v1alpha1.IsKnownProtocol(proto) {
		return target{}, nil, "", false
	}

	r := &v1alpha1.Rule{
		Origin: v1alpha1.OriginLearned,
		Ports:  []v1alpha1.PortProtocol{{Port: int32(f.DstPort), Protocol: proto}},
	}
	var peerName string
	if pns, pseg, ok := splitKey(peerSeg); ok {
		p := v1alpha1.Peer{Segment: pseg}
		peerName = pseg
		if pns != tg.ns {
			p.Namespace = pns
			peerName += "." + pns
		}
		r.Peers = []v1alpha1.Peer{p}
	} else if peer, name, ok := fqdnPeer(f); ok {
		r.Peers = []v1alpha1.Peer{peer}
		peerName = name
	} else {
		ip, err := netip.ParseAddr(peerIP)
		if err != nil || ip.Zone() != "" {
			return target{}, nil, "", false
		}
		ip = ip.Unmap()
		r.Peers = []v1alpha1.Peer{{CIDR: netip.PrefixFrom(ip, ip.BitLen()).String()}}
		if ip.Is4() {
			peerName = strings.ReplaceAll(ip.String(), ".", "-")
		} else {
			peerName = strings.ReplaceAll(ip.StringExpanded(), ":", "-")
		}
	}
	name := prefix + peerName + "-" + proto + "-" + strconv.FormatUint(uint64(f.DstPort), 10)
	if proto != v1alpha1.ProtocolTCP {
		if f.Connection || f.Verb == "" {
			return target{}, nil, "", false
		}
		suffix, ok := teach(r, proto, f)
		if !ok {
			l.log.Debug("learn: flow of a protocol learning does not know", "protocol", proto)
			return target{}, nil, "", false
		}
		name += suffix
	}
	r.Name = ruleName(name)
	// One bad flow (an odd command, a peer name no rule can carry) must not
	// spoil the batch it came in: check the rule alone.
	check := v1alpha1.SegmentPolicy{Spec: v1alpha1.SegmentPolicySpec{Ingress: []v1alpha1.Rule{*r}}}
	if tg.dir == store.Egress {
		check.Spec.Ingress, check.Spec.Egress = nil, check.Spec.Ingress
	}
	check.Name, check.Namespace = tg.name, tg.ns
	if err := check.Validate(); err != nil {
		l.log.Debug("learn: flow teaches no valid rule", "rule", r.Name, "err", err)
		return target{}, nil, "", false
	}
	key := strings.Join(append([]string{r.Name, f.Verb, f.Sub, f.Resource, f.Aux}, f.MoreResources...), "\x00")
	return tg, r, key, true
}

// grpcPath matches the path of a gRPC call, "/package.Service/Method"; the
// package is required, so that REST paths like "/users/create" stay HTTP.
var grpcPath = regexp.MustCompile(`^/([A-Za-z_][A-Za-z0-9_]*\.)+[A-Za-z_][A-Za-z0-9_]*/[A-Za-z_][A-Za-z0-9_]*$`)

// teach sets r's matcher from the L7 fields of f, a flow of the parsed
// protocol proto with a verb. It returns what the rule's name gets appended
// ("" for protocols learned in one rule per peer and port, "-<verb>" for
// those learned per verb, "-grpc" for gRPC calls), or false for a protocol
// it does not know or a flow it cannot learn from. Values a matcher cannot
// hold are left to the caller's validation of the rule.
func teach(r *v1alpha1.Rule, proto string, f *bulkheadv1.Flow) (string, bool) {
	// A '*' in a value would turn a learned host, name, topic or table into
	// a pattern ("*.example.com", "orders*", "shop.*"): such flows teach
	// nothing. Paths are generalised instead; keys are not learned.
	switch proto {
	case v1alpha1.ProtocolTLS, v1alpha1.ProtocolDNS, v1alpha1.ProtocolMySQL, v1alpha1.ProtocolPostgres, v1alpha1.ProtocolKafka:
		for _, v := range append([]string{f.Resource, f.Aux}, f.MoreResources...) {
			if strings.Contains(v, "*") {
				return "", false
			}
		}
	case v1alpha1.ProtocolHTTP, v1alpha1.ProtocolHTTP2:
		if strings.Contains(f.Aux, "*") {
			return "", false
		}
	}
	// A cut value is not the value: learning it would allow nothing. Cut
	// paths are generalised instead. Control characters have no place in a
	// pattern (the data plane refuses them).
	if wasCut(f.Aux, MaxFlowAux) || hasControl(f.Aux) {
		return "", false
	}
	res, ok := resources(f)
	if !ok && proto != v1alpha1.ProtocolHTTP && proto != v1alpha1.ProtocolHTTP2 {
		return "", false
	}
	verb := strings.ToUpper(f.Verb)
	switch proto {
	case v1alpha1.ProtocolRedis:
		c := strings.ToLower(f.Verb)
		if f.Sub != "" {
			c += "|" + strings.ToLower(f.Sub)
		}
		r.Redis = &v1alpha1.RedisMatch{Commands: []string{c}}
		return "", true
	case v1alpha1.ProtocolHTTP, v1alpha1.ProtocolHTTP2:
		if proto == v1alpha1.ProtocolHTTP2 && verb == "POST" && grpcPath.MatchString(f.Resource) {
			r.GRPC = &v1alpha1.GRPCMatch{Methods: []string{f.Resource[1:]}}
			return "-grpc", true
		}
		path, ok := vocab.GeneralizePath(f.Resource, wasCut(f.Resource, MaxFlowResource))
		if !ok {
			return "", false
		}
		r.HTTP = &v1alpha1.HTTPMatch{Methods: []string{verb}, Paths: []string{path}, Hosts: optional(strings.ToLower(f.Aux))}
		return "-" + verbName(verb), true
	case v1alpha1.ProtocolTLS:
		if sni := hostName(f.Resource); sni != "" {
			r.TLS = &v1alpha1.TLSMatch{ServerNames: []string{sni}}
		}
		return "", true
	case v1alpha1.ProtocolDNS:
		qname := hostName(f.Resource)
		if qname == "" {
			return "", false
		}
		r.DNS = &v1alpha1.DNSMatch{Names: []string{qname}, Types: []string{verb}}
		return "", true
	case v1alpha1.ProtocolMySQL, v1alpha1.ProtocolPostgres:
		r.SQL = &v1alpha1.SQLMatch{Verbs: []string{verb}, Tables: res, Databases: optional(f.Aux)}
		return "-" + verbName(verb), true
	case v1alpha1.ProtocolKafka:
		api, ok := vocab.KafkaAPI(f.Verb)
		if !ok {
			api = f.Verb
		}
		r.Kafka = &v1alpha1.KafkaMatch{APIs: []string{api}, Topics: res, ClientIDs: optional(f.Aux)}
		return "-" + verbName(api), true
	case v1alpha1.ProtocolMemcached:
		r.Memcached = &v1alpha1.MemcachedMatch{Commands: []string{strings.ToLower(f.Verb)}}
		return "", true
	case v1alpha1.ProtocolMongoDB:
		cmd := vocab.MongoCommand(f.Verb)
		r.MongoDB = &v1alpha1.MongoDBMatch{Commands: []string{cmd}, Collections: res, Databases: optional(f.Aux)}
		return "-" + verbName(cmd), true
	}
	return "", false
}

// resources lists the resources a flow names: nil when it names none, or
// more than it carries (only a list that allows any resource allows such a
// message); false when one of them was cut or holds a control character.
func resources(f *bulkheadv1.Flow) ([]string, bool) {
	more := f.MoreResources
	if n := len(more); n > 0 && more[n-1] == Cut {
		return nil, true
	}
	var out []string
	for _, r := range append([]string{f.Resource}, more...) {
		if wasCut(r, MaxFlowResource) || hasControl(r) {
			return nil, false
		}
		if r != "" {
			out = append(out, r)
		}
	}
	return out, true
}

// hasControl reports whether v holds an ASCII control character.
func hasControl(v string) bool {
	return strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0
}

// optional is a one-value list, or nil for "".
func optional(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

// hostName is a DNS name or SNI in the form matchers hold: lower case,
// without a final dot.
func hostName(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

// verbName is a verb as part of a rule name: lower case, '-' for anything
// but letters and digits.
func verbName(v string) string {
	b := []byte(strings.ToLower(v))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}

// splitKey splits a segment key "namespace/name".
func splitKey(key string) (ns, name string, ok bool) {
	ns, name, ok = strings.Cut(key, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", false
	}
	return ns, name, true
}

// ruleName bounds name to MaxName, replacing the end of a longer one by a
// hash of the whole, so that different long names stay different.
func ruleName(name string) string {
	if len(name) <= MaxName {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:4])
	return strings.TrimRight(name[:MaxName-len(h)-1], "-.") + "-" + h
}
