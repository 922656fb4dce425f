// Package l7 is the shared vocabulary between protocol parsers and the policy
// engine: a message view (Frame), the parser contract (Parser, Op) and the
// description of a protocol (Protocol). It imports only the standard library.
//
// A parser decodes; it never decides, logs or allocates. The engine decides.
package l7

import "errors"

// Dir is the direction of a message on a connection.
type Dir uint8

const (
	// DirRequest is client → server.
	DirRequest Dir = iota
	// DirReply is server → client.
	DirReply
)

func (d Dir) String() string {
	if d == DirReply {
		return "reply"
	}
	return "request"
}

// Op is what a parser tells the caller to do with the front of its input.
type Op uint8

const (
	// OpMore: the front of the input is an incomplete message; n is the
	// number of additional bytes needed at least (>= 1). The caller reads
	// more and calls Parse again with the same, longer input.
	OpMore Op = iota
	// OpFrame: the first n bytes are one message, described in the Frame.
	OpFrame
	// OpSkip: the first n bytes carry nothing to decide on (for example an
	// attribute or push message in the reply direction, or the body of the
	// request framed just before); forward them. In the request direction,
	// skipped bytes that follow a denied frame, up to the next frame, belong
	// to it (its body) and are dropped with it.
	OpSkip
	// OpPass: nothing more on this connection can be decided on (TLS after
	// the ClientHello, a session that switched to TLS): forward the rest of
	// both directions unparsed. n is 0. The parser reports why through the
	// last Frame it returned, if any.
	OpPass
)

func (o Op) String() string {
	switch o {
	case OpMore:
		return "more"
	case OpFrame:
		return "frame"
	case OpSkip:
		return "skip"
	case OpPass:
		return "pass"
	}
	return "op?"
}

// MaxVerb bounds Frame.Verb in bytes for every protocol. A parser that sees a
// longer verb returns ErrTooLong.
const MaxVerb = 64

// MaxResources bounds the resources one Frame carries (Resource plus More):
// the tables of a join, the topics of a Kafka request, the keys of a
// multi-key get. A parser that finds more sets Frame.Overflow; the engine
// then allows the message only under a matcher that allows any resource.
const MaxResources = 16

// Frame is one message, as views into the parser's input. Its slices are
// valid until the next Parse call or until the input buffer is reused,
// whichever comes first. A parser resets every field on each OpFrame.
type Frame struct {
	Dir Dir
	// Verb is what the message does: a Redis command name (as sent, any
	// case), an SQL verb, an HTTP method. Empty for replies.
	Verb []byte
	// Sub is a sub-command where the protocol has them (Redis CONFIG SET →
	// "SET"); empty otherwise.
	Sub []byte
	// Resource is what the message acts on: a key, table, topic, qname,
	// SNI or path. May be empty.
	Resource []byte
	// More holds the resources after Resource, NMore of them, when the
	// message names several (More[:NMore]).
	More  [MaxResources - 1][]byte
	NMore int
	// Overflow is set when the message names more than MaxResources.
	Overflow bool
	// Aux is protocol-specific context: database, Host header, statement
	// class. May be empty.
	Aux []byte
	// Args is the number of arguments the message carries, where the
	// protocol has such a notion (Redis: array length). Zero otherwise.
	Args int
	// Err is true when the message is an error reply.
	Err bool
	// NoReply is set on a request frame that the server will not answer
	// (memcached "noreply", a Kafka Produce with acks=0), so that the proxy
	// does not wait for its reply before placing a later denial.
	NoReply bool
	// Partial is set on a reply frame that does not complete the answer to
	// a request, where a protocol answers one request with several frames
	// (a MySQL result set, PostgreSQL messages before ReadyForQuery). The
	// proxy counts answered requests by the frames without Partial.
	Partial bool
	// Unordered is set on a frame (either direction) after which replies
	// no longer pair with requests for the rest of the connection: a
	// subscription that makes the server speak unasked, a quiet request
	// answered only sometimes (memcached "q" flags, GETQ). On a request
	// it takes effect once the frame is forwarded (a denied one changes
	// nothing). From then on the proxy writes each deny reply as soon as
	// it is produced, between two whole replies, instead of waiting for
	// the replies to earlier requests.
	Unordered bool
	// Control is set on a request frame that carries nothing for the
	// policy to judge but is a message of its own that the server must
	// get: a PostgreSQL startup packet, Bind, Describe, Sync, Terminate.
	// The proxy forwards it without judging or reporting it, and counts
	// it as a request awaiting a reply unless NoReply is set. Like any
	// frame it ends the body of a denied frame before it (skipped bytes
	// after a denied frame are dropped only up to the next frame).
	Control bool
}

// AddResource appends r as the message's next resource: into Resource when
// it is empty, else into More; past MaxResources it sets Overflow.
func (f *Frame) AddResource(r []byte) {
	switch {
	case f.Resource == nil:
		f.Resource = r
	case f.NMore < len(f.More):
		f.More[f.NMore] = r
		f.NMore++
	default:
		f.Overflow = true
	}
}

// Resources calls fn for each resource of the message, in order, until fn
// returns false. It does not allocate.
func (f *Frame) Resources(fn func(r []byte) bool) {
	if f.Resource == nil {
		return
	}
	if !fn(f.Resource) {
		return
	}
	for i := 0; i < f.NMore; i++ {
		if !fn(f.More[i]) {
			return
		}
	}
}

// Reset clears every field so that a Frame can be reused. It clears only
// More[:NMore] of the resource array, the part that is ever set (by
// AddResource) or read: zeroing the whole Frame, most of it an array of
// views that is almost always unused, took a good part of a parser's time
// per message. TestResetClearsEveryField keeps it complete.
func (f *Frame) Reset(d Dir) {
	clear(f.More[:min(max(f.NMore, 0), len(f.More))])
	f.Dir = d
	f.Verb, f.Sub, f.Resource, f.Aux = nil, nil, nil, nil
	f.NMore, f.Args = 0, 0
	f.Overflow, f.Err, f.NoReply, f.Partial, f.Unordered, f.Control = false, false, false, false, false, false
}

// Parser decodes the messages of one connection. One per connection, not
// safe for concurrent use; it may keep state between calls (for example a
// handshake phase), and it must accept its input split at any byte. One
// parser serves both directions of its connection: callers serialise all
// its calls, Parse in either direction and the optional interfaces'
// methods (DenyObserver, Multiplexer), as the proxy does with one lock per
// connection; parsers need no lock of their own.
//
// Parse decodes the message at the front of data. It returns OpMore and how
// many more bytes it needs at least, OpFrame and the message's length, or
// OpSkip and the length of bytes that carry nothing to decide on. On a
// malformed or over-limit message it returns a non-nil error (one of the
// sentinels below, wrapped or not; never allocated on the hot path) and the
// connection must be closed. Parse never panics and never reads past data.
type Parser interface {
	Parse(dir Dir, data []byte, f *Frame) (op Op, n int, err error)
}

// Protocol describes one protocol to the data plane. Values are listed in
// protocols/all; there is no global registry.
type Protocol struct {
	// Name is the word used in CRDs, xDS and metrics: "redis".
	Name string
	// New returns a parser for one connection.
	New func() Parser
	// Sniff reports whether a connection's first bytes (from the client,
	// or from the server for server-first protocols) look like this
	// protocol. It must not allocate. May be nil.
	Sniff func(first []byte) bool
	// Deny appends the protocol's own error reply for a denied request
	// to dst and returns it. reason is a short, safe, ASCII text (no CR/LF).
	Deny func(dst []byte, f *Frame, reason string) []byte
	// CloseOnDeny: after the deny reply the connection is closed (the
	// protocol cannot continue past a refused message, e.g. TLS).
	CloseOnDeny bool
	// ServerFirst: the server speaks first (MySQL's greeting); Sniff is
	// given the server's first bytes.
	ServerFirst bool
	// MaxMessage bounds the bytes of one message the proxy buffers for this
	// protocol; zero means the proxy's default.
	MaxMessage int
}

// DenyObserver is implemented by parsers whose framing depends on what the
// proxy did with a request: the proxy calls Denied after it answered the
// request frame f with the protocol's deny reply instead of forwarding it
// (PostgreSQL's extended protocol then discards messages up to Sync, as the
// server would after an error). Denied must not allocate.
type DenyObserver interface {
	Denied(f *Frame)
}

// Errors returned by parsers. Parsers may wrap them for context only off the
// hot path; callers test with errors.Is.
var (
	// ErrMalformed: the bytes violate the protocol's grammar.
	ErrMalformed = errors.New("l7: malformed message")
	// ErrTooLong: a length on the wire exceeds the parser's documented limit.
	ErrTooLong = errors.New("l7: message exceeds limit")
)
