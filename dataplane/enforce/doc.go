// Package enforce is the data plane's policy engine: it compiles the
// ProxyPolicy and Identity resources a proxy receives over xDS into an
// immutable Policy and judges connections and L7 messages against it.
//
// # Shape
//
// Compile is pure: it validates everything (mode, ports, protocols, peers,
// CIDRs, rule names, Redis command names, identity addresses) and refuses bad
// input whole with an error that names each offending field, so that the xDS
// client can NACK it and keep the previous Policy. A Policy is never changed
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
// and a hash table from upper-case Redis command name to the lowest rule
// allowing it, with a nested table for "CMD|SUB" sub-commands. Inbound is
// therefore a map lookup (or a binary search) and a slice index; Message is
// one or two map lookups on a stack buffer and allocates nothing.
//
// A rule's Redis matcher applies to the rule's ports whose protocol is
// "redis"; on its other ports (protocol "tcp") the rule allows every message.
// A rule without a matcher allows every message on its ports.
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
