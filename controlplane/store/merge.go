package store

import (
	"fmt"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// LearnedSuffix is appended to a learned rule's name when a user rule
// already has that name.
const LearnedSuffix = "-learned"

// MergeLearned merges learned rules into direction dir of policy ns/name,
// creating the policy (with no mode, so that the defaults apply) when it does
// not exist. Rules are united by name: a learned rule of the same name gets
// the new peers, ports and Redis commands added; a user rule is never
// touched, and a learned rule that would take its name is named
// name+LearnedSuffix instead. Every rule given is marked learned.
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
		p = newPolicy(ns, name)
	}
	list := &p.Spec.Ingress
	if dir == Egress {
		list = &p.Spec.Egress
	}
	for i := range rules {
		r := *rules[i].DeepCopy()
		r.Origin = v1alpha1.OriginLearned
		r.Normalize()
		at := findRule(*list, r.Name)
		if at >= 0 && (*list)[at].Origin != v1alpha1.OriginLearned {
			r.Name += LearnedSuffix
			at = findRule(*list, r.Name)
			if at >= 0 && (*list)[at].Origin != v1alpha1.OriginLearned {
				s.log.Debug("store: learned rule shadowed by user rules", "policy", key, "rule", r.Name)
				continue
			}
		}
		if at < 0 {
			*list = append(*list, r)
			continue
		}
		mergeRule(&(*list)[at], &r)
	}
	if err := p.Validate(); err != nil {
		return false, fmt.Errorf("merge learned rules into %s: %w", key, err)
	}
	changed, err := s.put(key, p)
	if err != nil {
		return false, fmt.Errorf("merge learned rules into %s: %w", key, err)
	}
	return changed, nil
}

func findRule(rules []v1alpha1.Rule, name string) int {
	for i := range rules {
		if rules[i].Name == name {
			return i
		}
	}
	return -1
}

// mergeRule widens dst by src: peers, ports and Redis commands united. An
// empty peer list (any peer) or a Redis port without a matcher (every
// command) absorbs the other side.
func mergeRule(dst, src *v1alpha1.Rule) {
	if len(dst.Peers) > 0 && len(src.Peers) > 0 {
		for _, pe := range src.Peers {
			if !containsPeer(dst.Peers, pe) {
				dst.Peers = append(dst.Peers, pe)
			}
		}
	} else {
		dst.Peers = nil
	}
	allCommands := (hasRedisPort(dst) && dst.Redis == nil) || (hasRedisPort(src) && src.Redis == nil)
	for _, pp := range src.Ports {
		if !containsPort(dst.Ports, pp) {
			dst.Ports = append(dst.Ports, pp)
		}
	}
	switch {
	case allCommands:
		dst.Redis = nil
	case src.Redis == nil:
	case dst.Redis == nil:
		dst.Redis = src.Redis.DeepCopy()
	default:
		dst.Redis.Commands = append(dst.Redis.Commands, src.Redis.Commands...)
	}
	dst.Normalize()
}

func containsPeer(ps []v1alpha1.Peer, p v1alpha1.Peer) bool {
	for _, q := range ps {
		if q == p {
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

func hasRedisPort(r *v1alpha1.Rule) bool {
	for _, pp := range r.Ports {
		if pp.EffectiveProtocol() == v1alpha1.ProtocolRedis {
			return true
		}
	}
	return false
}
