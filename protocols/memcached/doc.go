// Package memcached decodes memcached's three wire forms for Bulkhead's data
// plane, following the contract of protocols/l7: the text protocol (get,
// set, delete, stats…), meta commands (mg, ms, md, ma, mn, me) and the
// binary protocol. Like memcached, a Parser picks the form of a connection
// from its first byte: 0x80 (the binary request magic) means binary, anything
// else text and meta, which share one connection.
//
// In the request direction each command is one OpFrame: Verb is the command
// name as sent (memcached is case sensitive; binary: the opcode's name, such
// as "getkq"), Resource and More are the keys (a multi-key get names up to
// l7.MaxResources of them, Overflow beyond), NoReply marks requests memcached
// does not answer (text noreply, quit, meta q, binary quiet opcodes) and
// Unordered those after which replies no longer pair with requests. The data
// block of a storage command and the value of a binary request are OpSkip,
// streamed as they arrive. Every check that decides where a request ends is
// at least as strict as memcached's, so that a data block can never be read
// by the server as commands the parser did not frame.
//
// In the reply direction the frames let the proxy count answered requests:
// one non-Partial frame per answer, at its very end. The lines of a VALUE…END,
// STAT…END or metadump answer are Partial and END completes it; a VA answer
// and a binary response with a body end with a small frame (the final CRLF,
// the last body byte) that completes it, so that nothing can be slipped
// between a header and its data. Answers to binary quiet opcodes and all but
// the last response of a binary stat are Partial. Quiet meta commands cannot
// be counted: their frames, and those of watch, are Unordered.
//
// Frames are views into the caller's input (a meta key flagged b is decoded
// into the parser's own buffer); a Parse call allocates nothing. Every
// length read from the wire is checked against the Limits before it is
// trusted. README.md lists the wire forms, fields, deny replies, limits and
// known gaps.
//
// Deny builds the reply for a denied request (SERVER_ERROR access denied, or
// a binary response with status 0x0020) and Sniff recognises a memcached
// client from its first bytes. Protocol bundles them for protocols/all.
package memcached
