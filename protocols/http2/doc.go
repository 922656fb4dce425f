// Package http2 parses HTTP/2 over cleartext TCP (h2c with prior
// knowledge, the way gRPC and service meshes speak it) for the data plane:
// it frames the client's and the server's frames, decodes the client's
// header blocks with an HPACK decoder whose dynamic table lives in a
// fixed byte ring (entries tagged at insertion with the request field
// their name is, so that lookups compare no names; table-driven Huffman
// decoding), and reports each request (a header block opening a
// stream) as an l7.Frame: Verb = :method, Resource = the normalised :path
// (http1.AppendNormalizedPath; for gRPC "/pkg.Service/Method"), Aux = the
// :authority host, Args = the stream id | ArgsGRPC.
//
// Requests are multiplexed: the parser implements l7.Multiplexer so that
// the proxy can deny one stream (Deny answers it, Reject rewrites its
// header block so that the server decodes and refuses it, keeping HPACK
// in step) while the others continue. See README.md.
package http2
