package enforce

import (
	"slices"
	"strings"
)

// FQDN peers (Peer.fqdn, egress rules only) admit an address when one of the
// names it stands for in the Names table matches: exactly ("api.example.com")
// or below a domain ("*.example.com" matches "a.example.com" and
// "a.b.example.com", not "example.com").
//
// The names a single name matches are determined by its longest matching
// pattern: an exact pattern E, else the longest suffix pattern L that matches
// it. Every other suffix pattern that matches the name is a suffix of E (or
// L), so the set is E's (L's) closure: itself and the suffix patterns it
// ends with. Compile therefore builds, per port, one matcher per pattern for
// the rules of its closure, and a Conn needs one matcher per name of its
// destination (at most MaxNamesPerAddr, usually one), found with one map
// lookup for the exact pattern and one per distinct suffix length.

// fqdnTable is the compiled FQDN peers of the egress rules.
type fqdnTable struct {
	exact   map[string]int32 // "api.example.com" → pattern id
	suffix  map[string]int32 // ".example.com" → pattern id
	sufLens []int            // distinct suffix lengths, longest first
	// ports holds, per port named by an egress rule, the matcher of each
	// pattern's closure (nil: none of its rules names the port).
	ports map[uint16][]*matcher
}

// validFQDN reports whether s is a compiled FQDN peer: lower case, no final
// dot, labels of letters, digits, '-' and '_' of 1 to 63 bytes, at most
// MaxDNSName bytes, with an optional "*." in front.
func validFQDN(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > MaxDNSName {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// fqdnPatterns collects the distinct FQDN patterns of rules and the rules
// of each pattern's closure. ids maps a pattern to its id; a suffix pattern
// is stored as ".example.com".
type fqdnPatterns struct {
	exact, suffix map[string]int32
	closure       [][]int32 // by id: sorted rules of the closure
}

func collectFQDN(rules []*rule) *fqdnPatterns {
	fp := &fqdnPatterns{exact: map[string]int32{}, suffix: map[string]int32{}}
	var own [][]int32 // by id: rules naming the pattern itself
	var keys []string // by id
	for ri, r := range rules {
		for _, f := range r.fqdns {
			m, key := fp.exact, f
			if rest, ok := strings.CutPrefix(f, "*."); ok {
				m, key = fp.suffix, "."+rest
			}
			id, ok := m[key]
			if !ok {
				id = int32(len(own))
				m[key] = id
				own = append(own, nil)
				keys = append(keys, key)
			}
			own[id] = append(own[id], int32(ri))
		}
	}
	if len(own) == 0 {
		return nil
	}
	fp.closure = make([][]int32, len(own))
	for id, key := range keys {
		set := slices.Clone(own[id])
		// Every suffix pattern key ends with: walk its dots. An exact
		// name "a.b" ends with ".b"; a suffix ".a.b" with ".b" (itself
		// is already in own).
		for i := 1; i < len(key); i++ {
			if key[i] != '.' {
				continue
			}
			if sid, ok := fp.suffix[key[i:]]; ok {
				set = append(set, own[sid]...)
			}
		}
		slices.Sort(set)
		fp.closure[id] = slices.Compact(set)
	}
	return fp
}

// newFQDNTable starts the table of the patterns fp (nil when there are none);
// buildDir adds the matchers per port.
func newFQDNTable(fp *fqdnPatterns) *fqdnTable {
	if fp == nil {
		return nil
	}
	t := &fqdnTable{exact: fp.exact, suffix: fp.suffix, ports: map[uint16][]*matcher{}}
	for k := range fp.suffix {
		t.sufLens = append(t.sufLens, len(k))
	}
	slices.Sort(t.sufLens)
	slices.Reverse(t.sufLens)
	t.sufLens = slices.Compact(t.sufLens)
	return t
}

// pattern returns the id of the longest pattern that matches name, or -1.
// It allocates nothing.
func (t *fqdnTable) pattern(name string) int32 {
	if id, ok := t.exact[name]; ok {
		return id
	}
	for _, l := range t.sufLens {
		// A suffix ".x" matches names with at least one byte before it.
		if len(name) > l {
			if id, ok := t.suffix[name[len(name)-l:]]; ok {
				return id
			}
		}
	}
	return -1
}
