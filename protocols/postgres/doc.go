// Package postgres decodes the PostgreSQL frontend/backend protocol (version
// 3.x) for Bulkhead's data plane, following the contract of protocols/l7.
//
// In the request direction it frames the untyped startup-phase packets
// (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest, or a TLS
// ClientHello sent directly) and then every typed frontend message. The
// messages the policy judges are the simple Query ('Q'), Parse ('P'),
// Execute ('E', which carries the verb and tables of the statement its
// portal was bound to), FunctionCall ('F'), SSLRequest, GSSENCRequest,
// a direct TLS ClientHello and CancelRequest. The statement verb and the
// tables come from protocols/sqlverb, the database from the startup
// packet. Protocol bookkeeping that carries nothing to judge (the startup
// packet, Bind, Describe, Close, Flush, Sync, Terminate, password and SASL
// messages) is framed with l7.Frame.Control set; COPY data is skipped.
//
// In the reply direction every backend message is a Partial frame, except
// ReadyForQuery ('Z'), which completes the answer to a Query, a Sync, a
// FunctionCall or the startup packet, and the single-byte answers to
// SSLRequest and GSSENCRequest. NoticeResponse, ParameterStatus and
// NotificationResponse, which the server may send at any time, are skipped.
// Messages longer than StreamAbove are streamed: their header is framed,
// their body skipped as it arrives, so a large row is never buffered whole.
//
// A Parser remembers prepared statements and portals by name, copying their
// verb and tables into fixed storage, and follows the extended protocol's
// rule that after an error the server discards every message up to Sync:
// the proxy reports a denied Parse or Execute through Denied
// (l7.DenyObserver) and the parser then skips what follows up to Sync.
//
// Frames are views into the caller's input or into the parser's own
// storage; a Parse call allocates nothing in steady state. Every length
// read from the wire is checked against the server's own limit before it
// is trusted. README.md lists the wire format handled, the limits, the
// deny replies and the known gaps.
//
// Deny builds the protocol's own refusal (ErrorResponse with SQLSTATE 42501,
// followed by ReadyForQuery where the client waits for one) and Sniff
// recognises a PostgreSQL client from its first bytes. Protocol bundles the
// three for protocols/all.
package postgres
