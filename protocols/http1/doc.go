// Package http1 decodes HTTP/1.1 (and 1.0) for Bulkhead's data plane,
// following the contract of protocols/l7. The protocol's name is "http".
//
// In the request direction it frames each request head and reports the
// method (Frame.Verb), the normalised path (Frame.Resource: percent-decoded,
// dot-segments removed, slashes folded, path parameters, query and fragment
// dropped; see AppendNormalizedPath) and the host without port, lower case
// (Frame.Aux). Bodies, by Content-Length or chunked, are streamed as OpSkip
// and never buffered. Request smuggling vectors are refused with
// l7.ErrMalformed: Content-Length with Transfer-Encoding, repeated or
// non-numeric Content-Length, a Transfer-Encoding other than chunked,
// obs-fold, whitespace before a colon, bare CR or LF, an HTTP/1.1 request
// without Host.
//
// In the reply direction it frames responses so that the proxy can count
// answered requests: interim (1xx) responses and the head of a response
// with a body are Partial frames, the body is OpSkip but for its last
// piece, which is the frame that completes the answer. HEAD responses and
// 204/304 have no body; the parser knows which request a response answers
// because one Parser sees both directions of a connection. After a 101
// Switching Protocols that answers an upgrade request (WebSocket, h2c), or
// a 2xx that answers CONNECT, the connection is opaque: every call in
// either direction returns OpPass.
//
// Frame views point into the input (Verb) or into scratch buffers the
// Parser owns (Resource, Aux); a Parse call allocates nothing. Every length
// read from the wire is checked against a documented limit (MaxStartLine,
// MaxHead, MaxHeaders, MaxPath, MaxHost, MaxChunkLine, MaxBody,
// MaxPending). README.md lists the wire format, the fields, the deny reply
// and the known gaps.
//
// A head is parsed in two tight steps that each look at a byte once:
// scanHead checks every byte of it as it arrives (8 bytes a word; the
// first byte that needs a look is found from the word's flag bits) and
// records where its lines end. Past the start line, crlfRun takes the
// header lines a word at a time with a per-byte exact control-byte test
// (ctl8) and takes every CRLF of a word from its flag bits without
// loading the word again; any other flagged byte (bare CR or LF, a
// control byte, obs-text, a limit) goes to the byte checks. The fields
// are then split once: a name of up to 7 letters and "-" is checked and
// its colon found in one inlined word test (shortName), a longer one by
// fieldName (words of letters and "-", then a table loop); only the few
// fields the parser needs (Host, Content-Length, Transfer-Encoding,
// Connection, Upgrade) are picked by their name's length and compared
// with word loads, case folded by |0x20 (fields.go). The value of any
// other field is not looked at again. A plain path is copied as it is;
// any other is normalised in one pass (path.go). Chunk-size lines of hex
// digits and CRLF are read in one table loop, others by the byte-by-byte
// state machine.
//
// Deny builds the 403 response for a denied request and Sniff recognises
// an HTTP/1.x client from its first bytes. Protocol bundles them for
// protocols/all.
package http1
