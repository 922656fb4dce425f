package v1alpha1

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// MaxMatchValues bounds the values of one list of a matcher.
const MaxMatchValues = 1024

// Bounds shared with the data plane's engine (dataplane/enforce), so that a
// policy this package accepts always compiles there.
const (
	MaxPathPattern  = 512 // bytes of a path pattern
	MaxPathSegments = 63  // segments of a path template
)

// matcherProtocols says on which port protocols each L7 matcher applies.
var matcherProtocols = map[string][]string{
	"http":      {ProtocolHTTP, ProtocolHTTP2},
	"grpc":      {ProtocolHTTP2},
	"tls":       {ProtocolTLS},
	"dns":       {ProtocolDNS},
	"sql":       {ProtocolMySQL, ProtocolPostgres},
	"kafka":     {ProtocolKafka},
	"memcached": {ProtocolMemcached},
	"mongodb":   {ProtocolMongoDB},
}

var (
	methodRE   = regexp.MustCompile(`^[A-Z][A-Z-]{0,31}$`)
	hostRE     = regexp.MustCompile(`^(\*\.)?[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?)*\.?$`)
	grpcRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*/([A-Za-z_][A-Za-z0-9_]*|\*)$`)
	dnsTypeRE  = regexp.MustCompile(`^[A-Z][A-Z0-9]{0,9}$`)
	sqlVerbRE  = regexp.MustCompile(`^[A-Z][A-Z_]{0,31}$`)
	identRE    = regexp.MustCompile(`^[A-Za-z0-9_$.\-]{1,128}(\.\*)?$`)
	wordRE     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)
	kafkaRoles = map[string]bool{"produce": true, "consume": true, "admin": true}
)

// validateMatchers checks the L7 matchers of a rule whose port protocols are
// protos.
func (r *Rule) validateMatchers(protos map[string]bool, add func(path, format string, a ...any)) {
	present := []struct {
		name string
		on   bool
	}{
		{"http", r.HTTP != nil}, {"grpc", r.GRPC != nil}, {"tls", r.TLS != nil}, {"dns", r.DNS != nil},
		{"sql", r.SQL != nil}, {"kafka", r.Kafka != nil}, {"memcached", r.Memcached != nil}, {"mongodb", r.MongoDB != nil},
	}
	for _, pm := range present {
		name := pm.name
		if !pm.on {
			continue
		}
		ok := false
		for _, p := range matcherProtocols[name] {
			ok = ok || protos[p]
		}
		if !ok {
			add(name, "%s matcher on a rule with no %s port", name, strings.Join(matcherProtocols[name], " or "))
		}
	}
	// A rule's L7 matchers are compiled into one list that the data plane
	// applies to all of the rule's parsed ports, so a rule with matchers
	// may carry only ports those matchers speak about (and plain tcp).
	var with []string
	for _, pm := range present {
		if pm.on {
			with = append(with, matcherProtocols[pm.name]...)
		}
	}
	if len(with) > 0 {
		for _, proto := range sortedKeys(protos) {
			if proto == ProtocolTCP || proto == ProtocolRedis {
				continue
			}
			if !contains(with, proto) {
				add("ports", "protocol %q has no matcher in this rule, which has L7 matchers for other protocols: put it in a rule of its own", proto)
			}
		}
	}
	list := func(path string, vals []string, check func(string) bool, what string) {
		if len(vals) > MaxMatchValues {
			add(path, "%d values, at most %d", len(vals), MaxMatchValues)
			return
		}
		for i, v := range vals {
			if !check(v) {
				add(fmt.Sprintf("%s[%d]", path, i), "%q is not %s", v, what)
			}
		}
	}
	if m := r.HTTP; m != nil {
		list("http.methods", m.Methods, methodRE.MatchString, "an HTTP method (upper case)")
		list("http.paths", m.Paths, validPathPattern, `a path ("/exact", "/prefix/*", "/users/{id}")`)
		list("http.hosts", m.Hosts, validHost, `a host name or "*.suffix"`)
	}
	if m := r.GRPC; m != nil {
		if len(m.Methods) == 0 {
			add("grpc.methods", "at least one method is required")
		}
		list("grpc.methods", m.Methods, grpcRE.MatchString, `"package.Service/Method" or "package.Service/*"`)
	}
	if m := r.TLS; m != nil {
		if len(m.ServerNames) == 0 {
			add("tls.serverNames", "at least one server name is required")
		}
		list("tls.serverNames", m.ServerNames, validHost, `a server name or "*.suffix"`)
	}
	if m := r.DNS; m != nil {
		if len(m.Names) == 0 {
			add("dns.names", "at least one name is required")
		}
		list("dns.names", m.Names, validHost, `a DNS name or "*.suffix"`)
		list("dns.types", m.Types, dnsTypeRE.MatchString, "a DNS type (A, AAAA, TXT…)")
	}
	if m := r.SQL; m != nil {
		list("sql.verbs", m.Verbs, sqlVerbRE.MatchString, "an SQL verb (upper case)")
		list("sql.databases", m.Databases, identRE.MatchString, "a database name")
		list("sql.tables", m.Tables, identRE.MatchString, `a table ("table", "schema.table" or "schema.*")`)
	}
	if m := r.Kafka; m != nil {
		list("kafka.roles", m.Roles, func(s string) bool { return kafkaRoles[s] }, "a role (produce, consume, admin)")
		list("kafka.apis", m.APIs, wordRE.MatchString, "a Kafka API name (Produce, Fetch…)")
		list("kafka.topics", m.Topics, func(s string) bool {
			return s != "*" && printable(s, 249) && !strings.ContainsAny(s[:len(s)-1], "*")
		}, `a topic or "prefix*"`)
		list("kafka.clientIDs", m.ClientIDs, func(s string) bool { return printable(s, 256) }, "a client id")
	}
	if m := r.Memcached; m != nil {
		list("memcached.commands", m.Commands, func(s string) bool { return wordRE.MatchString(s) && s == strings.ToLower(s) }, "a memcached command (lower case)")
		list("memcached.keyPrefixes", m.KeyPrefixes, func(s string) bool { return printable(s, 250) }, "a key prefix")
	}
	if m := r.MongoDB; m != nil {
		list("mongodb.commands", m.Commands, wordRE.MatchString, "a command name")
		list("mongodb.databases", m.Databases, identRE.MatchString, "a database name")
		list("mongodb.collections", m.Collections, func(s string) bool { return printable(s, 255) }, "a collection name")
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// printable reports whether s is non-empty, at most max bytes and free of
// control characters and spaces.
func printable(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func validHost(s string) bool { return len(s) <= 253 && hostRE.MatchString(s) }

// validPathPattern accepts "/exact", "/prefix/*" and templates whose
// segments are literal, "{name}" or a final "{*}".
func validPathPattern(s string) bool {
	if s == "" || s[0] != '/' || !printable(s, MaxPathPattern) || strings.ContainsAny(s, "?#") {
		return false
	}
	segs := strings.Split(s[1:], "/")
	if len(segs) > MaxPathSegments {
		return false
	}
	for i, seg := range segs {
		switch {
		case seg == "*" || seg == "{*}":
			if i != len(segs)-1 {
				return false
			}
		case strings.HasPrefix(seg, "{"):
			if !strings.HasSuffix(seg, "}") || !wordRE.MatchString(seg[1:len(seg)-1]) {
				return false
			}
		case strings.ContainsAny(seg, "{}*"):
			return false
		}
	}
	return true
}

// normalizeMatchers puts the L7 matchers in canonical form: sets sorted and
// deduplicated; host-like values lower case, methods and verbs upper case.
func (r *Rule) normalizeMatchers() {
	if m := r.HTTP; m != nil {
		m.Methods = normSet(m.Methods, strings.ToUpper)
		m.Paths = normSet(m.Paths, nil)
		m.Hosts = normSet(m.Hosts, strings.ToLower)
	}
	if m := r.GRPC; m != nil {
		m.Methods = normSet(m.Methods, nil)
	}
	if m := r.TLS; m != nil {
		m.ServerNames = normSet(m.ServerNames, strings.ToLower)
	}
	if m := r.DNS; m != nil {
		m.Names = normSet(m.Names, strings.ToLower)
		m.Types = normSet(m.Types, strings.ToUpper)
	}
	if m := r.SQL; m != nil {
		m.Verbs = normSet(m.Verbs, strings.ToUpper)
		m.Databases = normSet(m.Databases, nil)
		m.Tables = normSet(m.Tables, nil)
	}
	if m := r.Kafka; m != nil {
		m.Roles = normSet(m.Roles, strings.ToLower)
		m.APIs = normSet(m.APIs, nil)
		m.Topics = normSet(m.Topics, nil)
		m.ClientIDs = normSet(m.ClientIDs, nil)
	}
	if m := r.Memcached; m != nil {
		m.Commands = normSet(m.Commands, strings.ToLower)
		m.KeyPrefixes = normSet(m.KeyPrefixes, nil)
	}
	if m := r.MongoDB; m != nil {
		m.Commands = normSet(m.Commands, nil)
		m.Databases = normSet(m.Databases, nil)
		m.Collections = normSet(m.Collections, nil)
	}
}

func normSet(in []string, fold func(string) string) []string {
	if in == nil {
		return nil
	}
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	for _, v := range in {
		v = strings.TrimSpace(v)
		if fold != nil {
			v = fold(v)
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}
