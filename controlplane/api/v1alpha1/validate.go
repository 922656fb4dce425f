package v1alpha1

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KnownProtocols lists the protocol names a PortProtocol may carry. The data
// plane's protocols/all must cover every name here but "tcp".
var KnownProtocols = []string{ProtocolTCP, ProtocolRedis, ProtocolHTTP, ProtocolHTTP2, ProtocolTLS, ProtocolMemcached, ProtocolPostgres, ProtocolDNS, ProtocolMySQL, ProtocolKafka, ProtocolMongoDB}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	commandRE = regexp.MustCompile(`^[a-z][a-z0-9_.\-]*(\|[a-z][a-z0-9_.\-]*)?$`)
)

// MaxRules bounds the rules of one direction of a policy.
const MaxRules = 1024

// MaxCommands bounds the commands of one Redis matcher.
const MaxCommands = 512

// Validate reports every problem of the policy, joined, with the field path
// of each ("spec.ingress[0].ports[1].protocol: unknown protocol \"foo\"").
// It never panics.
func (p *SegmentPolicy) Validate() error {
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	if p == nil {
		return errors.New("policy: nil")
	}
	if p.Name == "" {
		add("metadata.name", "required")
	} else if len(p.Name) > 63 || !nameRE.MatchString(p.Name) {
		add("metadata.name", "%q is not a DNS label", p.Name)
	}
	if p.Namespace == "" {
		add("metadata.namespace", "required")
	} else if len(p.Namespace) > 63 || !nameRE.MatchString(p.Namespace) {
		add("metadata.namespace", "%q is not a DNS label", p.Namespace)
	}
	switch p.Spec.Mode {
	case "", ModeDiscover, ModeMonitor, ModeProtect:
	default:
		add("spec.mode", "unknown mode %q (want discover, monitor or protect)", p.Spec.Mode)
	}
	errs = append(errs, p.Spec.Promotion.validate()...)
	errs = append(errs, p.Spec.Learning.validate()...)
	if p.Spec.Selector != nil {
		if _, err := metav1.LabelSelectorAsSelector(p.Spec.Selector); err != nil {
			add("spec.selector", "%v", err)
		}
	}
	for _, d := range []struct {
		path  string
		rules []Rule
	}{{"spec.ingress", p.Spec.Ingress}, {"spec.egress", p.Spec.Egress}} {
		dir, rules := d.path, d.rules
		if len(rules) > MaxRules {
			add(dir, "%d rules, at most %d", len(rules), MaxRules)
			continue
		}
		seen := map[string]int{}
		for i := range rules {
			path := fmt.Sprintf("%s[%d]", dir, i)
			if j, dup := seen[rules[i].Name]; dup && rules[i].Name != "" {
				add(path+".name", "%q repeats %s[%d]", rules[i].Name, dir, j)
			}
			seen[rules[i].Name] = i
			if strings.HasPrefix(rules[i].Name, InfraRulePrefix) {
				add(path+".name", "%q: the prefix %q is reserved for infrastructure allowances", rules[i].Name, InfraRulePrefix)
			}
			for _, e := range rules[i].validate(dir == "spec.egress") {
				errs = append(errs, fmt.Errorf("%s.%w", path, e))
			}
		}
	}
	return errors.Join(errs...)
}

// validate checks one rule of the ingress or (egress true) egress list.
func (r *Rule) validate(egress bool) []error {
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	if r.Name == "" {
		add("name", "required")
	} else if len(r.Name) > 128 || !nameRE.MatchString(r.Name) {
		add("name", "%q must be lower-case letters, digits, '-' or '.'", r.Name)
	}
	switch r.Origin {
	case "", OriginUser, OriginLearned:
	default:
		add("origin", "unknown origin %q (want user or learned)", r.Origin)
	}
	errs = append(errs, r.LearnedFrom.validate()...)
	for i, peer := range r.Peers {
		path := fmt.Sprintf("peers[%d]", i)
		switch {
		case peer.FQDN != "" && (peer.CIDR != "" || peer.Segment != "" || peer.Namespace != ""):
			add(path, "fqdn excludes segment, namespace and cidr")
		case peer.FQDN != "":
			if !validFQDN(peer.FQDN) {
				add(path+".fqdn", "%q is not a DNS name or \"*.suffix\" (lower case)", peer.FQDN)
			}
			if !egress {
				add(path+".fqdn", "fqdn peers are for egress rules only (a source address has no name to match)")
			}
		case peer.CIDR != "" && (peer.Segment != "" || peer.Namespace != ""):
			add(path, "cidr excludes segment and namespace")
		case peer.CIDR != "":
			if _, err := netip.ParsePrefix(peer.CIDR); err != nil {
				add(path+".cidr", "bad CIDR %q", peer.CIDR)
			}
		case peer.Segment == "" && peer.Namespace == "":
			add(path, "empty peer: set segment, namespace, cidr or fqdn")
		}
		if peer.Segment != "" && !nameRE.MatchString(peer.Segment) {
			add(path+".segment", "%q is not a DNS label", peer.Segment)
		}
		if peer.Namespace != "" && !nameRE.MatchString(peer.Namespace) {
			add(path+".namespace", "%q is not a DNS label", peer.Namespace)
		}
	}
	if len(r.Ports) == 0 {
		add("ports", "at least one port is required")
	}
	protos := map[string]bool{}
	for i, pp := range r.Ports {
		path := fmt.Sprintf("ports[%d]", i)
		if pp.Port < 1 || pp.Port > 65535 {
			add(path+".port", "%d is not a port (1-65535)", pp.Port)
		}
		proto := pp.EffectiveProtocol()
		if !IsKnownProtocol(proto) {
			add(path+".protocol", "unknown protocol %q (want one of %s)", pp.Protocol, strings.Join(KnownProtocols, ", "))
		}
		protos[proto] = true
	}
	r.validateMatchers(protos, add)
	if r.Redis != nil {
		if !protos[ProtocolRedis] {
			add("redis", "redis matcher on a rule with no redis port")
		}
		if len(r.Redis.Commands) == 0 {
			add("redis.commands", "at least one command is required")
		}
		if len(r.Redis.Commands) > MaxCommands {
			add("redis.commands", "%d commands, at most %d", len(r.Redis.Commands), MaxCommands)
		}
		for i, c := range r.Redis.Commands {
			if len(c) > 64 || !commandRE.MatchString(strings.ToLower(c)) {
				add(fmt.Sprintf("redis.commands[%d]", i), "%q is not a command name", c)
			}
		}
	}
	return errs
}

// validFQDN accepts an FQDN peer: a host name as matchers take them (lower
// case, "*." in front for every name below a domain, an optional final
// dot), but not "*" alone.
func validFQDN(s string) bool {
	return validHost(s) && s != "*." && strings.TrimSuffix(strings.TrimPrefix(s, "*."), ".") != ""
}

// EffectiveProtocol is Protocol, or "tcp" when it is empty.
func (pp PortProtocol) EffectiveProtocol() string {
	if pp.Protocol == "" {
		return ProtocolTCP
	}
	return pp.Protocol
}

// IsKnownProtocol reports whether name is one of KnownProtocols.
func IsKnownProtocol(name string) bool {
	for _, k := range KnownProtocols {
		if k == name {
			return true
		}
	}
	return false
}
