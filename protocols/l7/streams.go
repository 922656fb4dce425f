package l7

// Stream describes the frame of a multiplexed protocol (HTTP/2) that the
// last Parse call in one direction framed or skipped: which stream it
// belongs to and what the proxy must know to deny one stream without
// disturbing the others.
type Stream struct {
	// ID is the stream the bytes belong to; 0 for connection-level
	// frames (SETTINGS, PING, GOAWAY, connection WINDOW_UPDATE), the
	// connection preface and messages of a phase without streams
	// (HTTP/1.1 before an h2c upgrade), which the proxy answers and drops
	// as for an ordinary protocol.
	ID uint32
	// Flow is the number of flow-controlled bytes among the bytes just
	// returned (the DATA payload, padding included, without the frame
	// header): what the sender's connection window lost for them.
	Flow int
	// End is set on the bytes that end the sender's side of the stream
	// (a frame with END_STREAM, or RST_STREAM).
	End bool
	// Headers is set on a header block (HEADERS or PUSH_PROMISE with its
	// CONTINUATION frames), returned whole.
	Headers bool
	// Indexed is set on a header block that changed the HPACK dynamic
	// table of its receiver (a literal with incremental indexing or a
	// table size update): dropping it would desynchronise the receiver's
	// decoder.
	Indexed bool
	// Settings is set on a SETTINGS frame that is not an acknowledgement
	// (a server's first one is its connection preface).
	Settings bool
	// Waiting is set on a request frame (ID 0) of a phase that pairs
	// replies with requests in order (HTTP/1.1 before an h2c upgrade)
	// while earlier requests are unanswered: a deny reply written at once
	// would answer the wrong request.
	Waiting bool
}

// Multiplexer is implemented by parsers of protocols that carry several
// requests at once on one connection, each on a stream of its own
// (HTTP/2). The proxy detects it with a type assertion and then does not
// pair replies with requests: it denies a stream by answering it on the
// client's side (Protocol.Deny) and forwarding Reject's rewrite of its
// header block, and drops the frames that follow on that stream in both
// directions. None of the methods allocates when dst has capacity.
type Multiplexer interface {
	// Stream describes what the last Parse call in direction dir
	// returned (OpFrame or OpSkip).
	Stream(dir Dir) Stream
	// Reject appends to dst the request header block block (the bytes of
	// a request frame Parse just returned) rewritten so that the server
	// decodes it, keeping its compression state in step with the
	// client's, and then refuses the stream without acting on it.
	Reject(dst, block []byte) []byte
	// Credit appends to dst the message that gives the client back n
	// bytes of connection-level flow-control window (bytes the proxy
	// dropped on denied streams), n >= 1.
	Credit(dst []byte, n int) []byte
}
