package enforce

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Limits Compile enforces on its input.
const (
	// MaxRules bounds the rules of one direction of a ProxyPolicy.
	MaxRules = 1 << 16
	// MaxCommands bounds the commands of one RedisMatch and the verbs of
	// one L7Rule.
	MaxCommands = 4096
	// MaxNameLen bounds rule names, segment keys and namespaces in bytes.
	MaxNameLen = 512

	maxProblems = 20 // problems listed in one error; the rest are counted
)

// ErrInvalid is wrapped by every error Compile returns.
var ErrInvalid = errors.New("enforce: invalid policy")

// problems collects what is wrong with the input, each with its field path.
type problems struct {
	msgs []string
	more int
}

func (p *problems) add(path, format string, args ...any) {
	if len(p.msgs) >= maxProblems {
		p.more++
		return
	}
	p.msgs = append(p.msgs, path+": "+fmt.Sprintf(format, args...))
}

func (p *problems) err() error {
	if len(p.msgs) == 0 {
		return nil
	}
	msg := strings.Join(p.msgs, "; ")
	if p.more > 0 {
		msg += fmt.Sprintf("; and %d more", p.more)
	}
	return fmt.Errorf("%w: %s", ErrInvalid, msg)
}

// rule is a validated rule before indexing.
type rule struct {
	name  string
	any   bool // no peers: every peer
	segs  []string
	nss   []string
	cidrs []netip.Prefix
	fqdns []string // egress only: "api.example.com", "*.example.com"
	ports []rulePort
	cmds  []command // the Redis matcher; used only when hasRedis
	l7    []*l7Rule // the generic matcher; none: every message
	// hasRedis: the rule has a Redis matcher (maybe with no valid command).
	hasRedis bool
}

type rulePort struct {
	port  uint16
	kind  portKind // the rule's protocol on this port: which matcher applies
	proto string   // its name
}

// judge says what judges the rule's messages on a port of kind k.
func (r *rule) judge(k portKind) portState {
	switch {
	case k == kindRedis && r.hasRedis:
		return stateRedis
	case k == kindParsed && len(r.l7) > 0:
		return stateL7
	}
	return stateOpen
}

// command is an upper-case Redis command name and optional sub-command.
type command struct{ verb, sub string }

// ident is one address of the identity table.
type ident struct {
	segment   string   // "ns/segment"
	namespace string   // "ns"
	class     [2]int32 // peer class per direction (Ingress-1, Egress-1)
}

// Compile validates a ProxyPolicy and the identities it refers to and builds
// the immutable Policy the proxy judges with. It is pure and refuses bad input
// whole: the error wraps ErrInvalid and names every offending field (up to
// 20), for example
//
//	enforce: invalid policy: ingress[2].ports[0].port: 0 is not a port (1-65535)
//
// ProxyPolicy.segment may be the segment's name ("redis", qualified by
// ProxyPolicy.namespace) or its key ("demo/redis"). A port's empty protocol
// means "tcp". Identity.segment must be "namespace/segment" in the identity's
// own namespace; one address may appear in several identities only with the
// same segment. IPv4-mapped IPv6 addresses and prefixes are treated as IPv4.
func Compile(pp *bulkheadv1.ProxyPolicy, ids []*bulkheadv1.Identity) (*Policy, error) {
	return compile(pp, ids, parsedProtocols())
}

// compile is Compile with the names of the parsed protocols given (tests
// add protocols that protocols/all does not list yet).
func compile(pp *bulkheadv1.ProxyPolicy, ids []*bulkheadv1.Identity, parsed []string) (*Policy, error) {
	if pp == nil {
		return nil, fmt.Errorf("%w: policy is nil", ErrInvalid)
	}
	var pr problems
	protos := newProtoSet(parsed)
	p := &Policy{
		revision:  pp.GetRevision(),
		namespace: pp.GetNamespace(),
		protocols: make(map[uint16]string, len(pp.GetPorts())),
	}
	mode, ok := ModeFromProto(pp.GetMode())
	if !ok {
		pr.add("mode", "%s is not discover, monitor or protect", pp.GetMode())
	}
	p.mode = mode

	if !validName(p.namespace) {
		pr.add("namespace", "%q is not a namespace", p.namespace)
	}
	switch seg := pp.GetSegment(); {
	case strings.Contains(seg, "/"):
		ns, _, ok := splitSegment(seg)
		if !ok || ns != p.namespace {
			pr.add("segment", "%q is not a segment of namespace %q", seg, p.namespace)
		}
		p.segment = seg
	case !validName(seg):
		pr.add("segment", "%q is not a segment name", seg)
	default:
		p.segment = p.namespace + "/" + seg
	}

	seen := make(map[uint16]int, len(pp.GetPorts()))
	for i, port := range pp.GetPorts() {
		path := fmt.Sprintf("ports[%d]", i)
		num, proto, _, ok := checkPort(&pr, protos, path, port)
		if !ok {
			continue
		}
		if j, dup := seen[num]; dup {
			pr.add(path+".port", "%d repeats ports[%d]", num, j)
			continue
		}
		seen[num] = i
		p.protocols[num] = proto
		p.ports = append(p.ports, Port{Port: num, Protocol: proto})
	}
	slices.SortFunc(p.ports, func(a, b Port) int { return cmp.Compare(a.Port, b.Port) })

	in := checkRules(&pr, protos, "ingress", pp.GetIngress())
	out := checkRules(&pr, protos, "egress", pp.GetEgress())
	p.ids = checkIdentities(&pr, ids)
	if err := pr.err(); err != nil {
		return nil, err
	}
	p.dirs[Ingress-1] = buildDir(in, p.ids, Ingress)
	p.dirs[Egress-1] = buildDir(out, p.ids, Egress)
	p.egressProtos = egressProtocols(out)
	return p, nil
}

// egressProtocols maps each port named by an egress rule to the protocol the
// rules give it, or "" when they give it several.
func egressProtocols(rules []*rule) map[uint16]string {
	m := map[uint16]string{}
	for _, r := range rules {
		for _, p := range r.ports {
			if prev, ok := m[p.port]; ok && prev != p.proto {
				m[p.port] = ""
				continue
			}
			m[p.port] = p.proto
		}
	}
	return m
}

// checkPort validates one Port: its number and protocol name.
func checkPort(pr *problems, protos protoSet, path string, port *bulkheadv1.Port) (uint16, string, portKind, bool) {
	if port == nil {
		pr.add(path, "nil port")
		return 0, "", 0, false
	}
	ok := true
	if n := port.GetPort(); n < 1 || n > 65535 {
		pr.add(path+".port", "%d is not a port (1-65535)", n)
		ok = false
	}
	proto := port.GetProtocol()
	if proto == "" {
		proto = protoTCP
	}
	kind, known := protos.kind(proto)
	if !known {
		pr.add(path+".protocol", "unknown protocol %q (want one of %s)", port.GetProtocol(), strings.Join(protos.names, ", "))
		ok = false
	}
	return uint16(port.GetPort()), proto, kind, ok
}

// checkRules validates the rules of one direction.
func checkRules(pr *problems, protos protoSet, dir string, in []*bulkheadv1.Rule) []*rule {
	if len(in) > MaxRules {
		pr.add(dir, "%d rules, at most %d", len(in), MaxRules)
		return nil
	}
	seen := make(map[string]int, len(in))
	out := make([]*rule, 0, len(in))
	for i, r := range in {
		path := fmt.Sprintf("%s[%d]", dir, i)
		if r == nil {
			pr.add(path, "nil rule")
			continue
		}
		c := &rule{name: r.GetName()}
		switch j, dup := seen[c.name]; {
		case c.name == "":
			pr.add(path+".name", "empty rule name")
		case len(c.name) > MaxNameLen || !printable(c.name):
			pr.add(path+".name", "%q is not a rule name (printable ASCII, at most %d bytes)", c.name, MaxNameLen)
		case dup:
			pr.add(path+".name", "%q repeats %s[%d]", c.name, dir, j)
		default:
			seen[c.name] = i
		}
		if c.name != "" {
			path = fmt.Sprintf("%s[%d] %q", dir, i, c.name)
		}

		c.any = len(r.GetPeers()) == 0
		for j, peer := range r.GetPeers() {
			ppath := fmt.Sprintf("%s.peers[%d]", path, j)
			switch v := peer.GetPeer().(type) {
			case *bulkheadv1.Peer_Segment:
				if _, _, ok := splitSegment(v.Segment); !ok {
					pr.add(ppath+".segment", "%q is not \"namespace/segment\"", v.Segment)
					continue
				}
				c.segs = append(c.segs, v.Segment)
			case *bulkheadv1.Peer_Namespace:
				if !validName(v.Namespace) {
					pr.add(ppath+".namespace", "%q is not a namespace", v.Namespace)
					continue
				}
				c.nss = append(c.nss, v.Namespace)
			case *bulkheadv1.Peer_Cidr:
				pfx, err := parseCIDR(v.Cidr)
				if err != nil {
					pr.add(ppath+".cidr", "%v", err)
					continue
				}
				c.cidrs = append(c.cidrs, pfx)
			case *bulkheadv1.Peer_Fqdn:
				switch {
				case dir != "egress":
					pr.add(ppath+".fqdn", "fqdn peers are for egress rules only")
				case !validFQDN(v.Fqdn):
					pr.add(ppath+".fqdn", "%q is not a lower-case DNS name or \"*.suffix\" without a final dot", v.Fqdn)
				default:
					c.fqdns = append(c.fqdns, v.Fqdn)
				}
			default:
				pr.add(ppath, "no segment, namespace, cidr or fqdn set")
			}
		}

		if len(r.GetPorts()) == 0 {
			pr.add(path+".ports", "at least one port is required")
		}
		anyRedis, anyParsed := false, false
		for j, port := range r.GetPorts() {
			ppath := fmt.Sprintf("%s.ports[%d]", path, j)
			num, proto, kind, ok := checkPort(pr, protos, ppath, port)
			if !ok {
				continue
			}
			dup := false
			for _, q := range c.ports {
				dup = dup || q.port == num
			}
			if dup {
				pr.add(ppath+".port", "port %d listed twice", num)
				continue
			}
			c.ports = append(c.ports, rulePort{port: num, kind: kind, proto: proto})
			anyRedis = anyRedis || kind == kindRedis
			anyParsed = anyParsed || kind == kindParsed
		}

		if m := r.GetRedis(); m != nil {
			c.hasRedis = true
			cmds := m.GetCommands()
			switch {
			case !anyRedis:
				pr.add(path+".redis", "redis matcher on a rule with no redis port")
			case len(cmds) == 0:
				pr.add(path+".redis.commands", "at least one command is required (omit redis to allow every command)")
			case len(cmds) > MaxCommands:
				pr.add(path+".redis.commands", "%d commands, at most %d", len(cmds), MaxCommands)
			}
			if len(cmds) <= MaxCommands {
				for j, s := range cmds {
					cmd, err := parseCommand(s, "command")
					if err != "" {
						pr.add(fmt.Sprintf("%s.redis.commands[%d]", path, j), "%q: %s", s, err)
						continue
					}
					c.cmds = append(c.cmds, cmd)
				}
			}
		}
		if len(r.GetL7()) > 0 {
			if !anyParsed {
				pr.add(path+".l7", "l7 matcher on a rule with no port of a parsed protocol other than redis (want one of %s)",
					strings.Join(protos.generic(), ", "))
			}
			c.l7 = checkL7(pr, path, r.GetL7())
		}
		out = append(out, c)
	}
	return out
}

// checkIdentities validates the identities and builds the address table.
func checkIdentities(pr *problems, ids []*bulkheadv1.Identity) map[netip.Addr]ident {
	table := make(map[netip.Addr]ident)
	from := make(map[netip.Addr]int)
	for i, id := range ids {
		path := fmt.Sprintf("identities[%d]", i)
		if id == nil {
			pr.add(path, "nil identity")
			continue
		}
		path = fmt.Sprintf("identities[%d] %q", i, id.GetNamespace()+"/"+id.GetWorkload())
		ns := id.GetNamespace()
		if !validName(ns) {
			pr.add(path+".namespace", "%q is not a namespace", ns)
			continue
		}
		seg := id.GetSegment()
		if sns, _, ok := splitSegment(seg); !ok || sns != ns {
			pr.add(path+".segment", "%q is not \"%s/<segment>\"", seg, ns)
			continue
		}
		for j, s := range id.GetIps() {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				pr.add(fmt.Sprintf("%s.ips[%d]", path, j), "%q is not an IP address", s)
				continue
			}
			a = a.Unmap()
			if prev, ok := table[a]; ok && prev.segment != seg {
				pr.add(fmt.Sprintf("%s.ips[%d]", path, j), "%s is also in identities[%d] with segment %q", a, from[a], prev.segment)
				continue
			}
			table[a] = ident{segment: seg, namespace: ns}
			from[a] = i
		}
	}
	return table
}

// parseCommand splits and validates a Redis matcher entry or an L7Rule
// verb ("GET", "config|get"; noun is "command" or "verb") and upper-cases
// it. It returns a non-empty problem on error.
func parseCommand(s, noun string) (command, string) {
	verb, sub, hasSub := strings.Cut(s, "|")
	switch {
	case verb == "":
		return command{}, "empty " + noun + " name"
	case hasSub && sub == "":
		return command{}, "empty sub-command after '|'"
	case strings.Contains(sub, "|"):
		return command{}, "more than one '|'"
	case len(verb) > l7.MaxVerb:
		return command{}, fmt.Sprintf("%s name longer than %d bytes", noun, l7.MaxVerb)
	case len(sub) > l7.MaxVerb:
		return command{}, fmt.Sprintf("sub-command longer than %d bytes", l7.MaxVerb)
	case !printable(verb) || !printable(sub) || strings.Contains(s, " "):
		return command{}, noun + " names are printable ASCII without spaces"
	}
	return command{verb: upperASCII(verb), sub: upperASCII(sub)}, ""
}

// parseCIDR parses an address block; IPv4-mapped IPv6 blocks of /96 or
// longer become IPv4 blocks. The result is masked.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q", s)
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("CIDR %q mixes IPv4-mapped and IPv6 addresses", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// splitSegment splits a segment key "ns/segment".
func splitSegment(key string) (ns, name string, ok bool) {
	ns, name, ok = strings.Cut(key, "/")
	if !ok || !validName(ns) || !validName(name) {
		return "", "", false
	}
	return ns, name, true
}

// validName accepts Kubernetes-like names: 1 to MaxNameLen printable ASCII
// bytes without '/' or space.
func validName(s string) bool {
	return s != "" && len(s) <= MaxNameLen && printable(s) && !strings.ContainsAny(s, "/ ")
}

// printable reports whether s is printable ASCII (space allowed).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func upperASCII(s string) string {
	b := []byte(s)
	upperInto(b, b)
	return string(b)
}

// upperInto writes src upper-cased (ASCII only) to dst, which must be at
// least as long, and returns len(src).
func upperInto(dst, src []byte) int {
	for i, c := range src {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst[i] = c
	}
	return len(src)
}
