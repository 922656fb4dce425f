// Package mongodb decodes the MongoDB wire protocol for Bulkhead's data
// plane, following the contract of protocols/l7.
//
// Requests: OP_MSG (the only opcode of MongoDB 6+ for commands), the legacy
// OP_QUERY that drivers still use for the first hello/isMaster of a
// connection, and OP_COMPRESSED (framed as the verb COMPRESSED, not
// inspected). A command's name (the first key of its body document) is
// Frame.Verb, its collection (the first element's value when it is a
// string; getMore's "collection") is Frame.Resource and its database
// ("$db", or the namespace of OP_QUERY) is Frame.Aux. Document sequences
// (the documents of an insert) are skipped (OpSkip), streamed. Replies
// (OP_MSG, OP_REPLY, OP_COMPRESSED) are framed one final frame per reply;
// exhaust replies flagged moreToCome are Partial.
//
// Frames are views into the caller's input; a Parse call allocates nothing.
// Every length read from the wire is checked against the Limits before it
// is trusted; README.md lists them with the wire format, the deny reply and
// the known gaps.
//
// Deny builds the reply for a denied command (an OP_MSG error, code 13
// Unauthorized, answering the request's id) and Sniff recognises a MongoDB
// client from its first bytes. Protocol bundles the three for protocols/all.
package mongodb
