// Package proxy is bulkhead-proxy's connection pipeline: a transparent
// listener (the target of the iptables REDIRECT installed by dataplane/capture,
// port 15006) that judges every connection and every L7 message against the
// compiled policy of dataplane/enforce and forwards what is allowed to the
// workload; the same pipeline for the workload's own outbound connections
// (Config.Outbound, port 15001); and DNSProxy, the workload's DNS over UDP
// (port 15053).
//
// # Outbound
//
// With capture's outbound redirect, the workload's new TCP connections
// reach an outbound Proxy. Everything below applies, with these
// differences: the connection is judged by the egress rules under the
// segment's own mode (enforce.Policy.OutboundNamed: peers by segment,
// namespace, CIDR, and FQDN through Config.Names), so a connection no rule
// allows is reset in protect mode before anything is dialled; the protocol
// is the one the egress rules give the destination port
// (Policy.EgressProtocol; sniffed when they give none or several), so TLS
// rules judge the ClientHello's SNI of external HTTPS; the upstream is
// dialled with Config.Mark so that the redirect lets it out (or unmarked,
// Config.OwnerExcluded, when the redirect lets the proxy's uid out); flows are
// reported as egress (source: the workload). DNS over TCP to one of
// Config.NameServers also teaches Config.Names the addresses of its answers.
//
// DNSProxy serves the workload's DNS queries over UDP (capture redirects
// UDP/53): each is parsed, judged by the egress rules (dns matchers on port
// 53, the peer being the upstream nameserver), answered REFUSED with the
// Extended DNS Error "Blocked" when denied, else forwarded to the
// nameserver from a fresh marked socket; the answer is relayed from the
// socket the query came in on (so that conntrack restores the address the
// workload asked) and its A/AAAA records, with their TTLs, go into the
// Names table that FQDN peers consult. Queries in flight, the wait for an
// answer and the message size are bounded (DNSLimits); an answer over the
// size limit becomes an empty one with TC set, so the client retries over
// TCP, through the outbound proxy.
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
//  4. The protocol is the port's declared one, or found by sniffing: the
//     proxy waits up to Limits.SniffTimeout for the first bytes of either
//     side (the workload is dialled first, and read only when some
//     configured protocol is ServerFirst). Bytes from the workload before
//     the client said anything are matched against the ServerFirst
//     protocols (a greeting); otherwise the client's bytes against the
//     others, in the order of Config.Protocols. "tcp", unknown and
//     unrecognised traffic, and a connection on which nobody speaks in
//     time, is spliced by the kernel (splice(2), once the first
//     spliceAfter bytes went through user space: pump.go) and judged only
//     at connect time; the sniffed bytes are
//     forwarded first.
//  5. L7 connections run two goroutines (both park when idle: see
//     Limits below), each with one buffer that starts at
//     4 KiB and grows up to Limits.MaxMessage (or the protocol's smaller
//     l7.Protocol.MaxMessage); frames are parsed in place and never copied
//     out. A 4 KiB buffer comes from a pool when the socket is readable
//     (the read runs in a syscall.RawConn.Read callback, which gives the
//     buffer back before waiting) and goes back once everything read has
//     been consumed, so that an idle connection holds no buffer; a grown
//     buffer (up to 256 KiB) stays with its connection. The whole
//     read-parse-forward cycle runs inside that callback, and the sockets
//     have TCP_INQ on: a read that says nothing is left (a received FIN
//     counts as something) is followed by a wait for the runtime's
//     edge-triggered poller, not by a read that would answer EAGAIN, which
//     saves a system call per message and direction. (Waiting first is
//     sound only inside one RawConn.Read call: a new call resets the
//     poller's readiness, so each call reads before it waits.) Reads and
//     writes of the L7 path are raw system calls (syscall.RawSyscall,
//     rawio.go): the sockets are non-blocking, and telling the scheduler
//     about each call only made its monitor hand the proxy's single P to
//     a second thread during long writes (futex wake-ups and context
//     switches on the one CPU the proxy has). One parser
//     serves both directions (protocols frame replies by
//     what was asked); its calls are serialised by a mutex that is held
//     from Parse until the frame is judged, reported and answered, never
//     during I/O. Every request frame is judged, but Control frames, which
//     are forwarded unjudged; allowed frames (and violations in monitor
//     mode) are forwarded, consecutive ones in one write; a denied frame is
//     not forwarded and the client gets the protocol's own error reply
//     instead (l7.Protocol.Deny; a protocol whose client expects no answer,
//     a NoReply frame, may append nothing). Bytes the parser skips after a
//     denied frame, up to the next frame, are its body and are dropped with
//     it. After a denied frame the proxy calls the parser's Denied when it
//     implements l7.DenyObserver.
//  6. Messages are reported to the Aggregator with their verb and, for
//     every protocol but Redis (whose keys may hold personal data), their
//     resources and aux (report.Key.SetFrame). The connection itself is
//     reported as a connection flow of the declared protocol; on an
//     undeclared port, once sniffing is done, of the protocol recognised
//     ("tcp" only when the connection is spliced), since the control
//     plane learns an L4 rule, which allows every message, from "tcp"
//     connection flows alone.
//
// # Keeping replies in order
//
// A denial must reach the client in the position the server's reply would
// have had. The proxy counts requests forwarded upstream that await a reply
// (frames without l7.Frame.NoReply) and replies forwarded to the client
// (reply frames without l7.Frame.Partial: a result set's rows, 1xx
// responses and the like do not complete an answer). A denial produced
// while every forwarded request has been answered is written at once;
// otherwise it waits in a FIFO, tagged with the number of requests
// forwarded before it, and the reply goroutine writes it right after
// forwarding the reply that brings the count of replies to that tag. Writes
// to the client are serialised. Waiting denials are bounded (the buffer
// limit in bytes of them); a client that piles up more behind a slow reply
// is closed as over the limit.
//
// Requests with NoReply may still be answered by Partial frames that come
// before the next complete reply (PostgreSQL answers a pipeline's Parse,
// Bind and Execute with ParseComplete, BindComplete and rows, and only its
// Sync with ReadyForQuery). So the deny reply of a NoReply request that
// follows other NoReply requests (forwarded after the last request that
// awaits a reply) waits for the next complete reply and is written just
// before it, after those Partial frames: where the server puts its own
// error. A client that then never asks for a complete reply never gets
// that denial.
//
// Some exchanges break the pairing of requests and replies for good: a
// frame with l7.Frame.Unordered (a subscription, a quiet request answered
// only sometimes) that was forwarded, or that came from the workload, and
// for Redis a forwarded SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE or MONITOR or a
// RESP3 push message. The connection is then "unordered" for the rest of
// its life and denials are written as soon as they are produced (always
// between two whole reply frames, never inside one).
//
// # Passing and closing
//
// When the parser answers l7.OpPass in either direction (TLS after the
// ClientHello, a session that switched to TLS), both directions stop
// parsing: the bytes already read are forwarded first, then each direction
// is spliced by the kernel to its end. Denials still waiting for replies
// then cannot be placed: such a connection is reset.
//
// A protocol with l7.Protocol.CloseOnDeny (TLS) cannot go on past a
// refused message: nothing after the denied frame is forwarded, its deny
// reply is written in its place (after the replies to earlier requests),
// then the workload's connection is closed and the client gets a FIN, not
// an RST, so that the reply is delivered; what the client still sends is
// read and dropped for up to two seconds before the socket is closed.
//
// # Policy changes
//
// Each batch of requests read from a client first refreshes the connection's
// view of the policy (enforce.Conn.Refresh with the engine's current policy),
// so a mode switch or a new rule reaches connections that are already open.
//
// # Limits
//
// Every bound a peer can run into is counted in
// bulkhead_proxy_limit_total{limit=...}; those a client runs into on an L7
// connection are also reported as flows with reason "limit" (deny in
// protect mode, violation otherwise), and the client is reset (RST):
//
//   - max_conns: beyond Limits.MaxConns connections at once a new one is
//     reset at accept (also counted as connections_total{verdict=overload}).
//   - message_size: a message longer than the buffer ceiling (MaxMessage
//     or the protocol's own), known as soon as its header announces it.
//   - message_timeout (slowloris): once the proxy holds the first bytes of
//     a request (an incomplete frame), the request must be complete within
//     Limits.MessageTimeout plus one second per Limits.MessageMinRate bytes
//     of it received (Apache mod_reqtimeout's rule: a large message
//     streamed at a fair rate passes, one dribbled a byte at a time does
//     not). Bodies a parser streams through with l7.OpSkip are not held and
//     count as progress with each read; the idle timeout bounds them. Only
//     the client's direction is bound this way: the workload is trusted.
//     The check costs nothing per message: the read deadline is moved only
//     when a request is split across reads and would end earlier than the
//     deadline already set, and is re-armed lazily when it fires.
//   - first_message_timeout: an L7 client that sends nothing for
//     Limits.FirstMessageTimeout after the workload was dialled.
//   - idle_timeout: neither side sent anything for Limits.IdleTimeout
//     (both sides are closed; not reported as a flow).
//   - pending_denials: denials waiting for earlier replies outgrow the
//     buffer ceiling.
//
// An idle connection costs little: no buffer, and no goroutine. The
// workload side of an L7 connection that has read nothing for a second,
// with nothing held, parks: its socket goes into an epoll instance of the
// proxy's own (one-shot, for input or hang-up, found by a park id, never by
// descriptor number) and its goroutine exits; the client side does the
// same once the workload side is parked and the client has been silent for
// a second too (and has sent something, unless FirstMessageTimeout is
// off). One goroutine per proxy waits on that instance and starts a
// goroutine for the side whose socket becomes readable; the other side
// stays parked (a pushed Redis message resumes only the workload side).
// When one side ends while the other is parked, its goroutine runs the
// other side to its end itself (so that a reply to a request sent just
// before a half-close is still delivered, and a workload's close reaches
// the client). The parker enforces IdleTimeout on connections whose both
// sides are parked (it looks every IdleTimeout/8, between 50ms and a
// minute), and shutdown resumes every parked side once it has closed the
// connections, so that each ends and is counted. A parked side gives its
// parse frame, and the client side the flow key, back to pools.
//
// # Multiplexed protocols
//
// When the parser is an l7.Multiplexer (HTTP/2, h2.go), requests are not
// paired with replies: each stream is judged on its own. A denied stream
// is answered at once with Protocol.Deny's frames, written between two
// whole server frames and never before the server's first SETTINGS; its
// header block is forwarded rewritten by Multiplexer.Reject, so that the
// server decodes it (keeping HPACK in step) and refuses the stream; the
// client's later frames on it are dropped, their DATA given back to the
// client's connection window (Multiplexer.Credit), and the server's
// RST_STREAM for it is dropped too. At most 64 denied streams are
// remembered (the limit "pending_denials" beyond). Other streams go on.
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
