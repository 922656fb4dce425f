package store

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/compile/vocab"
)

// LearnedSuffix is appended to a learned rule's name when a user rule
// already has that name.
const LearnedSuffix = "-learned"

// MergeLearned merges learned rules into direction dir of policy ns/name,
// creating the policy (with no mode, so that the defaults apply) when it does
// not exist. Rules are united by name (several rules of one name may be
// given): a learned rule of the same name gets the new peers, ports and the
// values of its L7 matchers added (see below); a user rule is never touched,
// and a learned rule that would take its name is named name+LearnedSuffix
// instead. Every rule given is marked learned.
//
// Matchers unite list by list. A list that may be empty, where empty allows
// anything (HTTP methods, paths and hosts, SQL lists, Kafka roles+APIs,
// topics and client ids, memcached and MongoDB lists, DNS types), stays
// empty once either side is; so does a whole matcher when either side has a
// port of its protocol but no matcher for it (a Redis port without a Redis
// matcher, a TLS port without a TLS matcher: every message). HTTP paths are
// template-aware: a path a template covers is dropped, and more than
// vocab.CollapseThreshold paths differing at one segment become a
// template (see vocab.CollapsePaths). Each list keeps at most
// v1alpha1.MaxMatchValues values (Redis commands v1alpha1.MaxCommands): the
// values it had, then new ones (of each rule given, the smallest first)
// until it is full.
//
// New rules beyond v1alpha1.MaxRules in the direction are left out (and
// logged); the rules already there still learn.
//
// It reports whether anything was added; when nothing was, the file is not
// rewritten and Changes does not signal. A result that fails validation
// (too many rules, a bad name) is an error and changes nothing.
func (s *Store) MergeLearned(ns, name string, dir Direction, rules []v1alpha1.Rule) (bool, error) {
	key := ns + "/" + name
	if dir != Ingress && dir != Egress {
		return false, fmt.Errorf("merge learned rules into %s: bad direction %v", key, dir)
	}
	if len(rules) == 0 {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *v1alpha1.SegmentPolicy
	if e, ok := s.policies[key]; ok {
		p = e.p.DeepCopy()
	} else {
		if len(s.policies) >= maxLearnedPolicies {
			return false, fmt.Errorf("merge learned rules into %s: %w (%d)", key, ErrFull, maxLearnedPolicies)
		}
		p = newPolicy(ns, name)
	}
	mergeLearned(p, dir, rules, s.log)
	if err := p.Validate(); err != nil {
		return false, fmt.Errorf("merge learned rules into %s: %w", key, err)
	}
	changed, err := s.put(key, p)
	if err != nil {
		return false, fmt.Errorf("merge learned rules into %s: %w", key, err)
	}
	if changed {
		s.noteLearned(key)
	}
	return changed, nil
}

// MergeLearnedInto merges learned rules into direction dir of p in place,
// exactly as Store.MergeLearned does (same naming, uniting, limits), and
// validates the result. It is for stores kept elsewhere (the Kubernetes
// API: controlplane/k8s); p is changed even when the result is invalid.
func MergeLearnedInto(p *v1alpha1.SegmentPolicy, dir Direction, rules []v1alpha1.Rule, log *slog.Logger) error {
	if dir != Ingress && dir != Egress {
		return fmt.Errorf("merge learned rules into %s/%s: bad direction %v", p.Namespace, p.Name, dir)
	}
	mergeLearned(p, dir, rules, log)
	if err := p.Validate(); err != nil {
		return fmt.Errorf("merge learned rules into %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// mergeLearned is MergeLearned's merge of rules into p, unvalidated.
func mergeLearned(p *v1alpha1.SegmentPolicy, dir Direction, rules []v1alpha1.Rule, log *slog.Logger) {
	key := p.Namespace + "/" + p.Name
	list := &p.Spec.Ingress
	if dir == Egress {
		list = &p.Spec.Egress
	}
	touched := make(map[string]bool)
	full := 0 // new rules left out: the direction holds v1alpha1.MaxRules
	for i := range rules {
		r := *rules[i].DeepCopy()
		r.Origin = v1alpha1.OriginLearned
		r.Normalize()
		for _, l := range lists(&r) {
			if len(*l.vals) > l.max {
				*l.vals = (*l.vals)[:l.max]
			}
		}
		at := findRule(*list, r.Name)
		if at >= 0 && (*list)[at].Origin != v1alpha1.OriginLearned {
			r.Name += LearnedSuffix
			at = findRule(*list, r.Name)
			if at >= 0 && (*list)[at].Origin != v1alpha1.OriginLearned {
				log.Debug("store: learned rule shadowed by user rules", "policy", key, "rule", r.Name)
				continue
			}
		}
		if at < 0 && len(*list) >= v1alpha1.MaxRules {
			full++
			continue
		}
		touched[r.Name] = true
		if at < 0 {
			*list = append(*list, r)
			continue
		}
		unite(&(*list)[at], &r)
	}
	if full > 0 {
		log.Warn("store: learned rules left out: the policy has as many rules as it may", "policy", key, "direction", dir, "rules", full, "max", v1alpha1.MaxRules)
	}
	for i := range *list {
		if r := &(*list)[i]; touched[r.Name] {
			if tidy(r) {
				log.Info("store: learned rule allows any path: too many to keep", "policy", key, "rule", r.Name)
			}
		}
	}
}

func findRule(rules []v1alpha1.Rule, name string) int {
	for i := range rules {
		if rules[i].Name == name {
			return i
		}
	}
	return -1
}

// unite widens dst by src: peers, ports and matchers united (see
// MergeLearned). An empty peer list (any peer) absorbs the other side. dst
// is left for tidy to normalise.
func unite(dst, src *v1alpha1.Rule) {
	if len(dst.Peers) > 0 && len(src.Peers) > 0 {
		for _, pe := range src.Peers {
			if !slices.Contains(dst.Peers, pe) {
				dst.Peers = append(dst.Peers, pe)
			}
		}
	} else {
		dst.Peers = nil
	}
	// Which matchers either side leaves open, before the ports change.
	var open [numMatchers]bool
	for m := range numMatchers {
		open[m] = openFor(dst, m) || openFor(src, m)
	}
	for _, pp := range src.Ports {
		if !containsPort(dst.Ports, pp) {
			dst.Ports = append(dst.Ports, pp)
		}
	}

	if open[mRedis] {
		dst.Redis = nil
	} else if src.Redis != nil {
		if dst.Redis == nil {
			dst.Redis = &v1alpha1.RedisMatch{}
		}
		addAllMax(&dst.Redis.Commands, src.Redis.Commands, v1alpha1.MaxCommands)
	}
	if open[mHTTP] {
		dst.HTTP = nil
	} else if s := src.HTTP; s != nil {
		if dst.HTTP == nil {
			dst.HTTP = s.DeepCopy()
		} else {
			d := dst.HTTP
			unionAny(&d.Methods, s.Methods)
			unionAny(&d.Paths, s.Paths)
			unionAny(&d.Hosts, s.Hosts)
		}
	}
	if open[mGRPC] {
		dst.GRPC = nil
	} else if s := src.GRPC; s != nil {
		if dst.GRPC == nil {
			dst.GRPC = &v1alpha1.GRPCMatch{}
		}
		addAll(&dst.GRPC.Methods, s.Methods)
	}
	if open[mTLS] {
		dst.TLS = nil
	} else if s := src.TLS; s != nil {
		if dst.TLS == nil {
			dst.TLS = &v1alpha1.TLSMatch{}
		}
		addAll(&dst.TLS.ServerNames, s.ServerNames)
	}
	if open[mDNS] {
		dst.DNS = nil
	} else if s := src.DNS; s != nil {
		if dst.DNS == nil {
			dst.DNS = s.DeepCopy()
		} else {
			addAll(&dst.DNS.Names, s.Names)
			unionAny(&dst.DNS.Types, s.Types)
		}
	}
	if open[mSQL] {
		dst.SQL = nil
	} else if s := src.SQL; s != nil {
		if dst.SQL == nil {
			dst.SQL = s.DeepCopy()
		} else {
			d := dst.SQL
			unionAny(&d.Verbs, s.Verbs)
			unionAny(&d.Databases, s.Databases)
			unionAny(&d.Tables, s.Tables)
		}
	}
	if open[mKafka] {
		dst.Kafka = nil
	} else if s := src.Kafka; s != nil {
		if dst.Kafka == nil {
			dst.Kafka = s.DeepCopy()
		} else {
			d := dst.Kafka
			// Roles and APIs together are the verbs: both empty is any.
			if len(d.Roles)+len(d.APIs) == 0 || len(s.Roles)+len(s.APIs) == 0 {
				d.Roles, d.APIs = nil, nil
			} else {
				addAll(&d.Roles, s.Roles)
				addAll(&d.APIs, s.APIs)
			}
			unionAny(&d.Topics, s.Topics)
			unionAny(&d.ClientIDs, s.ClientIDs)
		}
	}
	if open[mMemcached] {
		dst.Memcached = nil
	} else if s := src.Memcached; s != nil {
		if dst.Memcached == nil {
			dst.Memcached = s.DeepCopy()
		} else {
			unionAny(&dst.Memcached.Commands, s.Commands)
			unionAny(&dst.Memcached.KeyPrefixes, s.KeyPrefixes)
		}
	}
	if open[mMongoDB] {
		dst.MongoDB = nil
	} else if s := src.MongoDB; s != nil {
		if dst.MongoDB == nil {
			dst.MongoDB = s.DeepCopy()
		} else {
			d := dst.MongoDB
			unionAny(&d.Commands, s.Commands)
			unionAny(&d.Databases, s.Databases)
			unionAny(&d.Collections, s.Collections)
		}
	}
}

// tidy puts a merged rule in canonical form: normalised, HTTP paths
// collapsed. It reports whether the paths had to be widened to any path.
func tidy(r *v1alpha1.Rule) (widened bool) {
	r.Normalize()
	if m := r.HTTP; m != nil && len(m.Paths) > 0 {
		m.Paths = vocab.CollapsePaths(m.Paths, vocab.CollapseThreshold, vocab.MaxLearnedPaths)
		widened = m.Paths == nil
	}
	return widened
}

// unionAny unites a list where empty means anything: empty on either side
// stays (or becomes) empty.
func unionAny(dst *[]string, src []string) {
	if len(*dst) == 0 || len(src) == 0 {
		*dst = nil
		return
	}
	addAll(dst, src)
}

// addAll appends the values of src that dst lacks, while dst holds fewer
// than v1alpha1.MaxMatchValues.
func addAll(dst *[]string, src []string) { addAllMax(dst, src, v1alpha1.MaxMatchValues) }

func addAllMax(dst *[]string, src []string, max int) {
	for _, v := range src {
		if len(*dst) >= max {
			return
		}
		if !slices.Contains(*dst, v) {
			*dst = append(*dst, v)
		}
	}
}

// valueList is one list of a matcher and how many values it may hold.
type valueList struct {
	vals *[]string
	max  int
}

// lists returns the value lists of r's matchers.
func lists(r *v1alpha1.Rule) []valueList {
	var ps []*[]string
	if m := r.HTTP; m != nil {
		ps = append(ps, &m.Methods, &m.Paths, &m.Hosts)
	}
	if m := r.GRPC; m != nil {
		ps = append(ps, &m.Methods)
	}
	if m := r.TLS; m != nil {
		ps = append(ps, &m.ServerNames)
	}
	if m := r.DNS; m != nil {
		ps = append(ps, &m.Names, &m.Types)
	}
	if m := r.SQL; m != nil {
		ps = append(ps, &m.Verbs, &m.Databases, &m.Tables)
	}
	if m := r.Kafka; m != nil {
		ps = append(ps, &m.Roles, &m.APIs, &m.Topics, &m.ClientIDs)
	}
	if m := r.Memcached; m != nil {
		ps = append(ps, &m.Commands, &m.KeyPrefixes)
	}
	if m := r.MongoDB; m != nil {
		ps = append(ps, &m.Commands, &m.Databases, &m.Collections)
	}
	out := make([]valueList, 0, len(ps)+1)
	if m := r.Redis; m != nil {
		out = append(out, valueList{&m.Commands, v1alpha1.MaxCommands})
	}
	for _, p := range ps {
		out = append(out, valueList{p, v1alpha1.MaxMatchValues})
	}
	return out
}

// The matchers of a rule, for openFor.
const (
	mRedis = iota
	mHTTP
	mGRPC
	mTLS
	mDNS
	mSQL
	mKafka
	mMemcached
	mMongoDB
	numMatchers
)

// matcherProtocols lists the port protocols each matcher applies to.
var matcherProtocols = [numMatchers][]string{
	mRedis:     {v1alpha1.ProtocolRedis},
	mHTTP:      {v1alpha1.ProtocolHTTP, v1alpha1.ProtocolHTTP2},
	mGRPC:      {v1alpha1.ProtocolHTTP2},
	mTLS:       {v1alpha1.ProtocolTLS},
	mDNS:       {v1alpha1.ProtocolDNS},
	mSQL:       {v1alpha1.ProtocolMySQL, v1alpha1.ProtocolPostgres},
	mKafka:     {v1alpha1.ProtocolKafka},
	mMemcached: {v1alpha1.ProtocolMemcached},
	mMongoDB:   {v1alpha1.ProtocolMongoDB},
}

func hasMatcher(r *v1alpha1.Rule, m int) bool {
	switch m {
	case mRedis:
		return r.Redis != nil
	case mHTTP:
		return r.HTTP != nil
	case mGRPC:
		return r.GRPC != nil
	case mTLS:
		return r.TLS != nil
	case mDNS:
		return r.DNS != nil
	case mSQL:
		return r.SQL != nil
	case mKafka:
		return r.Kafka != nil
	case mMemcached:
		return r.Memcached != nil
	case mMongoDB:
		return r.MongoDB != nil
	}
	return false
}

// openFor reports whether r allows every message on a port that matcher m
// applies to: r has such a port and no matcher for that port's protocol.
func openFor(r *v1alpha1.Rule, m int) bool {
	for _, pp := range r.Ports {
		proto := pp.EffectiveProtocol()
		if !slices.Contains(matcherProtocols[m], proto) {
			continue
		}
		judged := false
		for other := range numMatchers {
			judged = judged || (hasMatcher(r, other) && slices.Contains(matcherProtocols[other], proto))
		}
		if !judged {
			return true
		}
	}
	return false
}

func containsPort(ps []v1alpha1.PortProtocol, p v1alpha1.PortProtocol) bool {
	for _, q := range ps {
		if q.Port == p.Port && q.EffectiveProtocol() == p.EffectiveProtocol() {
			return true
		}
	}
	return false
}
