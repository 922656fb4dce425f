package enforce

import (
	"slices"

	"github.com/bulkhead-io/bulkhead/protocols/all"
)

// Protocol names with a meaning of their own. "tcp" means L4 only (no
// parser); "redis" has its own matcher (Rule.redis); every other name of
// protocols/all is judged by the generic matcher (Rule.l7).
const (
	protoTCP   = "tcp"
	protoRedis = "redis"
)

// portKind is what judges messages on a port, by its declared protocol.
type portKind uint8

const (
	kindTCP    portKind = iota // L4 only: every message
	kindRedis                  // Rule.redis
	kindParsed                 // any other parsed protocol: Rule.l7
)

// protoSet is the set of protocol names Compile accepts: "tcp" and the
// parsed protocols. Built once per Compile.
type protoSet struct {
	names []string // sorted, "tcp" included
}

// parsedProtocols returns the names of protocols/all.
func parsedProtocols() []string {
	ps := all.Protocols()
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return names
}

func newProtoSet(parsed []string) protoSet {
	names := append([]string{protoTCP}, parsed...)
	slices.Sort(names)
	return protoSet{names: slices.Compact(names)}
}

// kind returns what judges messages of the named protocol; ok is false for
// an unknown name.
func (s protoSet) kind(name string) (k portKind, ok bool) {
	if _, found := slices.BinarySearch(s.names, name); !found {
		return 0, false
	}
	switch name {
	case protoTCP:
		return kindTCP, true
	case protoRedis:
		return kindRedis, true
	}
	return kindParsed, true
}

// generic returns the names judged by the generic matcher: all but "tcp"
// and "redis".
func (s protoSet) generic() []string {
	return slices.DeleteFunc(slices.Clone(s.names), func(n string) bool { return n == protoTCP || n == protoRedis })
}
