// Package tls decodes the first message of a TLS connection, the client's
// ClientHello, for Bulkhead's data plane, following the contract of
// protocols/l7.
//
// In the request direction it reassembles the ClientHello from one or more
// handshake records (TLS 1.0 to 1.3, the record layer of every version is
// the same) and reports it as one frame: Verb "CLIENT_HELLO", Resource the
// server name the client asks for (SNI, lower case, without a final dot;
// nil without SNI), Aux the first protocol the client offers through ALPN
// and Args the ClientHello's legacy_version. Everything after the
// ClientHello is encrypted or beyond judging: the next Parse call, in either
// direction, returns l7.OpPass and the proxy splices the rest of the
// connection. In the reply direction the server speaks only after the
// ClientHello, so the reply parser checks that the server's first bytes are
// a TLS record header and answers l7.OpPass.
//
// Frames are views into the caller's input or into fixed buffers the Parser
// owns; a Parse call allocates nothing. Every length read from the wire is
// checked against a documented limit before it is trusted; README.md lists
// them with the wire format, the deny reply and the known gaps.
//
// Deny builds the reply for a denied ClientHello (a fatal access_denied
// alert; the proxy then closes the connection) and Sniff recognises a TLS
// client from its first bytes. Protocol bundles the three for protocols/all.
package tls
