// Package enforce is the data plane's policy engine: it compiles the
// ProxyPolicy and Identity resources a proxy receives over xDS into an
// immutable Policy and judges connections and L7 messages against it.
//
// # Shape
//
// Compile is pure: it validates everything (mode, ports, protocols, peers,
// CIDRs, rule names, Redis command names, L7 verbs and patterns, identity
// addresses) and refuses bad input whole with an error that names each
// offending field, so that the xDS client can NACK it and keep the previous
// Policy. A Policy is never changed
// after Compile; the proxy publishes the current one through an Engine (an
// atomic.Pointer), as Tailscale's wgengine/filter and Cilium's proxylib do.
//
// Per connection the proxy calls Policy.Inbound(peer, port) and gets a Conn,
// a small value that records the Policy it was derived from, the peer's
// segment and namespace, and a precomputed matcher: the union of every rule
// that admits this peer on this port. Connect judges the connection (L4),
// Message judges one request frame (L7). Before each batch of messages the
// proxy calls Conn.Refresh(engine.Load()): when the Policy changed (a new
// rule, a mode switch) the Conn re-derives itself; otherwise it is one
// pointer comparison.
//
// # How matching works
//
// Compile sorts the rules of each direction by name; a rule's index is its
// rank, so "the first rule that allows" is the one with the lowest index and
// reports are deterministic. Peers are reduced to classes: every address is
// in exactly one class, the set of rules whose peers admit it (its segment,
// its namespace, rules with no peers, and rules whose CIDRs contain it).
// Known addresses map to their class through the identity table (a
// map[netip.Addr]); unknown addresses through a sorted table of disjoint
// address ranges cut at every CIDR boundary (binary search). For every port
// named by a rule and every class, Compile builds (and shares among equal
// rule sets) one matcher: the lowest rule with no L7 matcher on that port,
// a hash table from upper-case Redis command name to the lowest rule
// allowing it, with a nested table for "CMD|SUB" sub-commands, and the
// generic index below. Inbound is therefore a map lookup (or a binary
// search) and a slice index; Message is a few hash-table probes and
// allocates nothing.
//
// What applies on a rule's port depends on the protocol the rule gives it:
// "tcp": the rule allows every message; "redis": the rule's Redis matcher
// (Rule.redis), if any; any other protocol of protocols/all: the rule's
// generic matchers (Rule.l7), if any. A rule without the matcher that
// applies allows every message on that port. When rules give one port
// different protocols, a message is allowed by the matchers of any of them
// (a Conn does not know which parser framed the message).
//
// # FQDN peers (egress)
//
// An egress rule's Peer.fqdn ("api.example.com", "*.example.com") admits a
// destination address that a matching name resolved to. Which names an
// address stands for changes with every DNS answer, so it is not in the
// immutable Policy: the proxy keeps a Names table (a concurrent map from
// address to at most MaxNamesPerAddr names with their expiry, bounded,
// filled from the DNS answers it relays) and derives egress Conns with
// OutboundNamed, which copies the destination's unexpired names into the
// Conn (one read-locked map lookup, no allocation). Compile builds, per
// port, one matcher per FQDN pattern for the rules of the patterns a name
// matching it also matches (its "closure", see fqdn.go); the Conn adds the
// matchers of its names (one exact lookup and one per distinct suffix length
// per name) to its peer class's, and Connect and Message judge the union,
// exactly as if those rules were in the class. The Conn keeps its names for
// its life: Refresh re-matches them against the new Policy's FQDN peers
// even after they expired in the table. Outbound (without a table) never
// matches an FQDN peer.
//
// # Generic L7 matching
//
// A request is allowed when each resource it names (l7.Frame.Resource, then
// More[:NMore]; a message naming none counts as one resource that only
// L7Rules without resource patterns cover) is covered by an L7Rule of the
// admitting rules whose verbs list its verb (or are empty), whose aux
// patterns match its Aux (or are empty) and whose resource patterns match
// the resource (or are empty). Different resources may be covered by
// different rules. A frame with Overflow (more than l7.MaxResources
// resources) is allowed only by an L7Rule without resource patterns. The
// rule reported is the lowest that covers the first resource.
//
// Verbs compare ASCII case-insensitively (Compile upper-cases the policy's;
// "VERB|SUB" narrows a sub-command as for Redis). Patterns are literal:
// exact, prefix and suffix compare bytes (ASCII case-insensitively with
// fold_case); a template splits both sides at every "/" and compares
// segment by segment, "{name}" matching one non-empty segment and a final
// "{*}" the non-empty rest ("/files/{*}" matches "/files/a/b" and
// "/files/a/", not "/files/" or "/files"), so "/users/42/" does not match
// "/users/{id}". Compile refuses a pattern that is empty, longer than
// MaxPatternLen, holds control characters, or is a malformed template, and
// bounds the lists (MaxL7Rules, MaxPatterns, MaxRulePatterns, MaxCommands
// verbs, MaxTemplateSegments).
//
// The generic index of a matcher merges the L7Rules of its rules by
// upper-case verb: one bucket per verb, one per "VERB|SUB", and one for
// L7Rules without verbs; a message consults at most three. A bucket is a
// resource matcher over all its L7Rules' patterns, each entry carrying its
// rule's rank and its L7Rule's aux patterns (checked only on a hit; the
// lowest rank wins):
//
//   - exact values in a hash table;
//   - prefixes and suffixes in a hash table keyed by the pattern, probed once
//     per distinct pattern length with the value's head or tail (a DNS
//     suffix ".example.com" is one probe, not a walk over the labels);
//   - templates in a segment trie: literal children in a hash table (a
//     lone literal child is compared instead), one "{name}" child, entries
//     for a final "{*}"; each node is visited at most once
//     per value, and subtrees whose lowest rank cannot win are skipped;
//   - L7Rules without resource patterns as a lowest rank, or an index of
//     their aux patterns.
//
// The generic index's hash tables (btab) are built at compile time: open
// addressing over a 64-bit multiply-mix hash that reads 8 bytes at a time,
// probed with the frame's bytes as they are (no string conversion), a
// value's hash computed at most once per message for the case-sensitive
// tables and once for the fold_case ones, when first needed (a value
// probed only in case-sensitive tables, such as a SQL table's name, is
// never folded). Patterns with fold_case are stored lower-cased and
// probed with the value folded (ASCII) as it is hashed and compared,
// never copied: its head for exact values and prefixes, its tail
// for suffixes, one segment at a time for templates. A slot keeps its
// key's first 8 bytes as a word, so a key of up to 8 bytes is compared
// in one step, and a table of at most 4 such keys (a rule's few verbs,
// SQL tables or aux values, the common case) is probed without hashing:
// length and word are compared with each key. A value longer than
// MaxPatternLen never equals an exact pattern, so nothing is lost. An
// L7Rule's aux patterns are matched once per message, whatever the number
// of resources. What a Conn's matchers have in common (which of them
// apply, the lowest rank without an L7 matcher, whether any parses) is
// derived once per Conn, not per message. Matching is bounded by the message's
// resources (at most l7.MaxResources), the patterns' distinct lengths and
// the template trie's size, never by the number of rules.
//
// # Modes and verdicts
//
//	mode      rule allows   nothing allows
//	discover  Allow         Allow (Reason says why nothing did; the learner learns it)
//	monitor   Allow         Violation (reported, not enforced)
//	protect   Allow         Deny, Enforced (connection refused / message answered with the protocol's error)
//
// Decision.Rule is the compiled rule name ("ns/policy/rule") that allowed the
// connection or message, in every mode, or "" when none did.
//
// # No policy yet
//
// Engine.Load returns nil until the first Store. The proxy must fail closed
// then: refuse new connections until a policy is known. At start it restores
// the last good configuration from disk (xdsclient.LoadCache), compiles it and
// stores it before accepting. As a safety net, Inbound and Outbound on a nil
// *Policy return a Conn that denies everything (Deny, Enforced, NoRule).
//
// The package imports only the standard library, controlplane/api/bulkheadv1
// and protocols/...; never k8s.io or controlplane/api/v1alpha1.
package enforce
