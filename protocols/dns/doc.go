// Package dns decodes DNS messages (RFC 1035) for Bulkhead's data plane,
// over TCP (Parser.Parse, the l7.Parser contract: a 2-byte length before
// each message, pipelined queries) and over UDP (Parser.ParseDatagram, one
// message per datagram). Messages are decoded with
// golang.org/x/net/dns/dnsmessage, whose copyable Parser and fixed-size
// names keep every call free of allocations; the common query shape is
// read directly from the bytes first (fastQuery), and so is a response
// outside a zone transfer (its header and question in parseResponse, its
// record sections in fastRecords), with the same results. Answers, which
// only the learning of egress names needs, reads the question again and
// walks the answer section through dnsmessage after the frame, off the
// verdict path.
//
// A query becomes one request frame: Verb = the query type as dig names
// it ("A", "AAAA", "TXT", "HTTPS", "TYPE4660" for a type without a
// mnemonic; for opcodes other than QUERY the opcode: "NOTIFY", "UPDATE"),
// Resource = the question's name, lower case, without the final dot (nil
// for the root), Aux = the class when it is not IN ("CH" for
// version.bind), Args = the query's ID, flags, type, class and EDNS
// packed for Deny (Query, QueryOf). A query must hold exactly one
// question. A response becomes one reply frame (Err when its RCODE is not
// NOERROR, Args = its answer count); the messages of a zone transfer over
// TCP but the last are Partial. After a reply frame, Parser.Answers
// reports the A and AAAA records that answer the question, following
// CNAME chains, for the proxy's egress name → address learning.
//
// Deny and DenyDatagram build the REFUSED response to a denied query, with
// an Extended DNS Error 15 "Blocked" when the query had EDNS. Sniff
// recognises a DNS-over-TCP client from its first bytes. Protocol bundles
// them for protocols/all. README.md lists the wire format, fields, limits
// and known gaps.
package dns
