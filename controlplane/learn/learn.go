// Package learn turns the flows of discover-mode segments into learned
// rules and merges them into the store.
//
// An ingress flow becomes a rule of the destination segment's policy, an
// egress flow a rule of the source segment's; either only while that segment
// is in discover mode, both as the proxy judged it (Flow.Mode) and as the
// store says now. A rule allows one peer (a segment, or an unknown address as
// a /32 or /128 CIDR) on one port and protocol; Redis rules list the commands
// seen, in lower case, "verb|sub" for commands with sub-commands. Learning is
// idempotent: flows already covered change nothing.
package learn

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

// MaxName bounds a learned rule's name, leaving room for
// store.LearnedSuffix within the 128 characters a rule name may have.
const MaxName = 128 - len(store.LearnedSuffix)

// Learner merges learned rules into a store. It is safe for concurrent use.
type Learner struct {
	st  *store.Store
	log *slog.Logger
}

// New returns a Learner that writes to st. A nil log discards.
func New(st *store.Store, log *slog.Logger) *Learner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Learner{st: st, log: log}
}

// target is one direction of one policy.
type target struct {
	ns, name string
	dir      store.Direction
}

// Observe learns from one batch of flows reported by node. Flows that teach
// nothing are skipped: not in discover mode, denied, already allowed by a
// rule, of an unknown segment, protocol or port, and Redis flows without a
// command (a bare connection to a Redis port would otherwise allow every
// command). The rules of each policy are merged with one store write.
func (l *Learner) Observe(node string, flows []*bulkheadv1.Flow) {
	groups := make(map[target]map[string]*v1alpha1.Rule)
	discover := make(map[string]bool) // by segment key, asked once per batch
	var skipped int
	for _, f := range flows {
		tg, r, ok := l.learnable(f)
		if !ok {
			skipped++
			continue
		}
		key := tg.ns + "/" + tg.name
		d, seen := discover[key]
		if !seen {
			d = l.st.EffectiveMode(tg.ns, tg.name) == v1alpha1.ModeDiscover
			discover[key] = d
		}
		if !d {
			skipped++
			continue
		}
		rules := groups[tg]
		if rules == nil {
			rules = make(map[string]*v1alpha1.Rule)
			groups[tg] = rules
		}
		if old := rules[r.Name]; old != nil {
			if old.Redis != nil && r.Redis != nil {
				old.Redis.Commands = append(old.Redis.Commands, r.Redis.Commands...)
			}
			continue
		}
		rules[r.Name] = r
	}

	targets := make([]target, 0, len(groups))
	for tg := range groups {
		targets = append(targets, tg)
	}
	slices.SortFunc(targets, func(a, b target) int {
		return cmp.Or(strings.Compare(a.ns, b.ns), strings.Compare(a.name, b.name), cmp.Compare(a.dir, b.dir))
	})
	for _, tg := range targets {
		rules := make([]v1alpha1.Rule, 0, len(groups[tg]))
		for _, r := range groups[tg] {
			rules = append(rules, *r)
		}
		slices.SortFunc(rules, func(a, b v1alpha1.Rule) int { return strings.Compare(a.Name, b.Name) })
		changed, err := l.st.MergeLearned(tg.ns, tg.name, tg.dir, rules)
		if err != nil {
			l.log.Warn("learn: cannot merge learned rules", "node", node, "policy", tg.ns+"/"+tg.name, "direction", tg.dir, "err", err)
			continue
		}
		if changed {
			l.log.Info("learn: rules learned", "node", node, "policy", tg.ns+"/"+tg.name, "direction", tg.dir, "rules", len(rules))
		}
	}
	if skipped > 0 {
		l.log.Debug("learn: flows skipped", "node", node, "skipped", skipped, "flows", len(flows))
	}
}

// learnable returns the policy a flow teaches and the rule it teaches, or
// false. It checks everything but the store's mode.
func (l *Learner) learnable(f *bulkheadv1.Flow) (target, *v1alpha1.Rule, bool) {
	if f == nil || f.Mode != bulkheadv1.Mode_MODE_DISCOVER || f.Verdict == bulkheadv1.Verdict_VERDICT_DENY || f.Rule != "" {
		return target{}, nil, false
	}
	var own, peerSeg, peerIP, prefix string
	var tg target
	switch f.Direction {
	case bulkheadv1.Direction_DIRECTION_INGRESS:
		own, peerSeg, peerIP, prefix, tg.dir = f.DstSegment, f.SrcSegment, f.SrcIp, "from-", store.Ingress
	case bulkheadv1.Direction_DIRECTION_EGRESS:
		own, peerSeg, peerIP, prefix, tg.dir = f.SrcSegment, f.DstSegment, f.DstIp, "to-", store.Egress
	default:
		return target{}, nil, false
	}
	var ok bool
	if tg.ns, tg.name, ok = splitKey(own); !ok {
		return target{}, nil, false
	}
	if f.DstPort < 1 || f.DstPort > 65535 {
		return target{}, nil, false
	}
	proto := strings.ToLower(f.Protocol)
	if proto == "" {
		proto = v1alpha1.ProtocolTCP
	}
	if !v1alpha1.IsKnownProtocol(proto) {
		return target{}, nil, false
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
	} else {
		ip, err := netip.ParseAddr(peerIP)
		if err != nil || ip.Zone() != "" {
			return target{}, nil, false
		}
		ip = ip.Unmap()
		r.Peers = []v1alpha1.Peer{{CIDR: netip.PrefixFrom(ip, ip.BitLen()).String()}}
		if ip.Is4() {
			peerName = strings.ReplaceAll(ip.String(), ".", "-")
		} else {
			peerName = strings.ReplaceAll(ip.StringExpanded(), ":", "-")
		}
	}
	r.Name = ruleName(prefix + peerName + "-" + proto + "-" + strconv.FormatUint(uint64(f.DstPort), 10))

	if proto == v1alpha1.ProtocolRedis {
		if f.Connection || f.Verb == "" {
			return target{}, nil, false
		}
		c := strings.ToLower(f.Verb)
		if f.Sub != "" {
			c += "|" + strings.ToLower(f.Sub)
		}
		r.Redis = &v1alpha1.RedisMatch{Commands: []string{c}}
	}
	// One bad flow (an odd command, a peer name no rule can carry) must not
	// spoil the batch it came in: check the rule alone.
	check := v1alpha1.SegmentPolicy{Spec: v1alpha1.SegmentPolicySpec{Ingress: []v1alpha1.Rule{*r}}}
	check.Name, check.Namespace = tg.name, tg.ns
	if err := check.Validate(); err != nil {
		l.log.Debug("learn: flow teaches no valid rule", "rule", r.Name, "err", err)
		return target{}, nil, false
	}
	return tg, r, true
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
