// Package proxy is bulkhead-proxy's inbound connection pipeline: a transparent
// listener (the target of the iptables REDIRECT installed by dataplane/capture,
// port 15006) that judges every connection and every L7 message against the
// compiled policy of dataplane/enforce and forwards what is allowed to the
// workload.
//
// # Per connection
//
//  1. The original destination comes from SO_ORIGINAL_DST
//     (capture.OriginalDst). A connection whose original destination is the
//     listener itself was not redirected and is closed: forwarding it would
//     loop. Tests that run without iptables set Config.OriginalDst.
//  2. With no policy loaded (none from the control plane and none cached) the
//     proxy fails closed: the connection is reset and counted as no_policy.
//  3. The policy judges the connection (peer, port). A denial in protect mode
//     resets the client (RST) before anything is dialled; otherwise the
//     workload's own IP:port is dialled (the proxy's own traffic is not
//     redirected by PREROUTING, so there is no loop).
//  4. The protocol is the port's declared one, or the first protocol of
//     Config.Protocols whose Sniff accepts the client's first bytes (read
//     within Limits.SniffTimeout). "tcp", unknown and unrecognised traffic
//     is spliced by the kernel (io.Copy between *net.TCPConn uses splice(2))
//     and judged only at connect time.
//  5. L7 connections run two goroutines, each with one buffer that starts at
//     4 KiB and grows up to Limits.MaxMessage; frames are parsed in place and
//     never copied out. Every request frame is judged; allowed frames
//     (and violations in monitor mode) are forwarded, consecutive ones in one
//     write; a denied frame is not forwarded and the client gets the
//     protocol's own error reply instead.
//
// # Keeping replies in order
//
// A denial must reach the client in the position the server's reply would
// have had. The proxy counts requests forwarded upstream and replies forwarded
// to the client (the reply goroutine parses replies to count them). A denial
// produced while every forwarded request has been answered is written at
// once; otherwise it waits in a FIFO, tagged with the number of requests
// forwarded before it, and the reply goroutine writes it right after
// forwarding the reply that brings the count of replies to that tag. Writes
// to the client are serialised. Waiting denials are bounded (Limits.MaxMessage
// bytes of them); a client that piles up more behind a slow reply is closed
// as over the limit.
//
// Publish/subscribe and MONITOR break the pairing of requests and replies:
// once a SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE or MONITOR has been forwarded, or a
// RESP3 push message has been seen, the connection is "unordered" for the rest
// of its life and denials are written as soon as they are produced (always
// between two whole replies, never inside one).
//
// # Policy changes
//
// Each batch of requests read from a client first refreshes the connection's
// view of the policy (enforce.Conn.Refresh with the engine's current policy),
// so a mode switch or a new rule reaches connections that are already open.
//
// # Failures
//
// A malformed or over-limit request is reported (reason "malformed" or
// "limit"; verdict deny in protect mode, violation otherwise), counted, and
// both sides are closed (the client with RST); a
// malformed reply closes the connection too. Other connections are never
// affected. Shutdown (the context of Start) stops accepting, lets connections
// finish for Limits.DrainTimeout, then closes what is left.
package proxy
