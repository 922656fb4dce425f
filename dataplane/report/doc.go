// Package report aggregates the flows a proxy judges and streams them to the
// control plane.
//
// # Keys and aggregation
//
// A Key describes one kind of flow: direction, source and destination
// address, destination port, protocol, L7 verb and sub-command (upper-cased),
// the L7 detail (first resource, aux, further resources), verdict, mode,
// reason, the rule that allowed it, and whether it is a connection (L4)
// record or a message (L7) record. The part the Aggregator's map is keyed
// by is packed and pointer-free, of fixed-size arrays (in the manner of
// Tailscale's net/flowtrack), so that it is a cheap map key and filling one
// allocates nothing. Strings that a key refers to (protocol and rule names)
// are interned by the Aggregator into small integers (Aggregator.Intern);
// the table holds at most 65534 names for the life of the Aggregator.
//
// The L7 detail has no fixed size, so the map key holds a 64-bit hash of
// it (hash/maphash, with a seed of the Aggregator's own) and the Key holds
// the detail as views into the caller's buffers (Key.SetL7, Key.SetFrame):
// Add copies the detail, cut to the bounds of bulkheadv1.Flow (MaxResource,
// MaxAux, MaxMore), only when the key is new in the window. Two records
// whose detail differs are distinct flows unless their hashes collide
// (then the first one's detail stands for both). What is reported is the
// caller's decision: the proxy passes no Redis keys. A window holds at most
// max keys, so its detail is bounded too (at most about 4 KiB per key).
//
// An egress connection's records also carry the DNS name its destination
// address was resolved from (Key.SetDstName, Flow.dst_name), set once per
// connection: the Key copies it into a fixed buffer of its own (253 bytes,
// outside the map key, so that keys of unnamed flows stay small) and the
// name joins the L7 hash, so flows that differ only by name aggregate
// apart and adding a named record allocates nothing either.
//
// Every reported string is valid UTF-8 within its bound; a field cut at its
// bound ends with Truncated ("..."), and a message naming more resources
// than MaxMore further ones reports MaxMore-1 and Truncated as the last.
//
// The Aggregator counts messages and bytes per Key within a window, with the
// first and last time each key was seen. It is safe for concurrent use by
// every connection's goroutines; Add on a key already in the window is one
// short critical section and allocates nothing. It holds at most max keys:
// beyond that, records of new keys are counted as dropped and never stored.
// Drain returns the window as bulkheadv1.Flow records and starts a new one.
//
// # Segments
//
// Segment names are not part of the Key. The Reporter adds them when it
// drains a window, through Options.Resolve (typically the identity table of
// the current enforce.Policy). A workload that disappeared within the last
// window may therefore be reported without its segment.
//
// # Reporting
//
// The Reporter drains the Aggregator every Options.Interval and sends what it
// drained to the control plane's FlowService. Each report is one client
// stream: the pending windows as FlowBatch messages of at most
// Options.MaxBatch flows, then CloseAndRecv. The server's ReportSummary is the
// acknowledgement: only then are the flows released, so a report that fails
// anywhere (connection refused, server restart, timeout) loses nothing; the
// flows wait in a bounded pending buffer (Options.MaxPending flows; the
// oldest are dropped first and counted in the next FlowBatch.dropped) and go
// with the next report. Delivery is at least once: a report whose
// acknowledgement is lost is sent again. After a failure the next attempt
// waits an exponential, jittered backoff (from Interval up to
// Options.MaxBackoff), while windows keep being drained into the buffer.
// When Start's context ends, a final drain and report is attempted within
// Options.FinalTimeout.
package report
