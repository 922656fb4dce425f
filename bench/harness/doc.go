// Package harness runs Bulkhead's side-by-side load comparisons: for each
// scenario it measures three arms in turn, on the same machine, in the same
// run, with the same load tool and settings, and writes a Markdown report.
//
// # Arms
//
//   - direct: the client talks to the server with no proxy — the limit of
//     this machine.
//   - haproxy: Debian's haproxy in TCP mode (one thread), a proxy that does
//     not parse the protocol.
//   - bulkhead: bulkhead-proxy in its deployment shape — transparent, behind
//     the iptables REDIRECT that `bulkhead-proxy init` installs in the
//     server's network namespace — in protect mode, with a policy that
//     allows the benchmark's traffic and denies the rest (Redis: GET and SET
//     only; the harness checks that CONFIG is denied), so every message is
//     parsed and judged. GOMAXPROCS=1.
//
// Both proxies sit behind the same REDIRECT (haproxy listens on the
// proxy's port 15006 and forwards to the server's address), so the two
// proxied arms differ only in the proxy process.
//
// The Bulkhead arm runs without a control plane: the harness writes the
// policy and identities into the proxy's cache directory with
// xdsclient.WriteCache, the file a proxy restores at start. That keeps the
// arm free of control-plane CPU on the 2 cores and of policy changes
// mid-run; the proxy still aggregates a flow per message (its reports to
// the unreachable control plane fail and are retried with backoff).
//
// # Machine layout
//
// A test/lab network with two hosts, "client" and "server". The load
// generator and the server run on CPU 0 (taskset), the proxy under test on
// CPU 1. Scenarios: Redis (redis-benchmark -t get / -t set, -c 50, -P 1 and
// -P 16), connection churn (redis-benchmark -k 0: a new connection per
// request), HTTP/1.1 against nginx serving 1 KiB (wrk -c 16 for maximum
// throughput, then fortio -c 16 at a fixed rate for p50/p90/p99; HAProxy
// in HTTP mode with ACLs equal to Bulkhead's http rule: GET /bench
// allowed, /admin denied with 403 by both proxies), TCP bulk through an L4-only rule (iperf3), idle connections
// (resident memory of the proxy at 0, 1,000 and 10,000 connections that sent
// one GET each; held by the harness itself, as no standard tool holds idle
// connections open), the protocol suites (suites.go, one file each: sql —
// pgbench -S against PostgreSQL and sysbench oltp_read_only against
// MariaDB; dns — dnsperf over TCP against unbound; kafka — a kcat producer
// against franz-go's kfake, the one fake server, as no Kafka broker is
// packaged; tls — new TLS 1.3 handshakes against nginx with wrk and
// Connection: close), and `go test -bench` over the parsers and the
// verdict path. The parser-and-verdict target (≤ 100 ns per typical message) is
// judged per message: by the benchmark's own ns/msg metric where one
// operation parses several messages (a recorded session, a pipeline, a
// transaction, requests priming replies), else by ns/op; benchmarks of
// untypical input (tiny reads, one message of many answers or rows) are
// listed unjudged.
//
// Throughput and latency come from the load tool; proxy CPU from
// /proc/<pid>/stat (utime+stime) around the run, divided by the requests
// (or gigabytes) the tool reports; resident memory is VmRSS from
// /proc/<pid>/status after the run. Idle memory is read once the proxy has
// settled (settle.go). The memory targets are judged with MB and KB as
// powers of ten, the stricter reading.
package harness
