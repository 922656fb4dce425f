// Package history keeps the control plane's flow history: an aggregated,
// bounded record of the flows and verdicts the proxies reported, on the
// control plane's own disk, so that operators can look back (explain,
// replay, drift) beyond the in-memory tables of controlplane/flows.
//
// # Storage
//
// Flows are aggregated in memory per window (Options.Window, one minute by
// default) by their key — direction, addresses, port, protocol, the L7
// fields, verdict, rule and reason — and each window is appended to the
// current log file as JSON lines (one Record a line). A log file is sealed
// after Options.FileAge or Options.FileBytes and a new one begun; files are
// named h-<first write, Unix nanoseconds>.jsonl so that their names sort
// by time. A file is never rewritten while it is the current one.
//
// Compaction runs every Options.CompactInterval in Start: sealed files older
// than Options.CompactAfter are rewritten aggregated (one record per key
// for the whole file, counts summed, first/last seen widened) into
// h-<start>.c.jsonl (written to a temporary file, synced, renamed);
// files whose newest record is older than Options.MaxAge are deleted; and
// while the folder holds more than Options.MaxBytes, the oldest files are
// deleted. A truncated last line (a crash mid-write) is skipped when read.
//
// An embedded database was considered (bbolt, pebble, badger from the Go
// module proxy): the history is written append-only, read by full scans
// (replay and drift look at the whole window), and expired by age and size,
// which files do directly; a B-tree or LSM store would add a dependency,
// its own compaction and size accounting, and nothing these access paths
// use.
//
// # Records and ids
//
// Every Record carries the judging segment (the destination's for ingress,
// the source's for egress), the mode, the rule that allowed the flow or the
// reason none did, and the L7 fields (verb, sub, resource, aux, further
// resources). Record.ID is a hash of the flow's key, so that the same flow
// has the same id in every window and after compaction; `bulkhead explain
// --id` takes it.
//
// # Export
//
// Larger installations ship flows to a system they already run: every
// Exporter in Options.Exporters receives each window's records as it is
// written. JSONLines writes them as JSON lines to any io.Writer (a file,
// see OpenFile), Socket to a TCP or Unix socket it (re)dials as needed.
// A failing exporter is logged and counted; the history itself is kept.
package history
