// Package redis decodes the Redis serialization protocol (RESP2 and RESP3)
// for Bulkhead's data plane, following the contract of protocols/l7.
//
// In the request direction it frames multibulk commands (*N\r\n$len\r\narg…)
// and inline commands (PING\r\n) the way redis-server does, and reports the
// command name (Frame.Verb), the sub-command of container commands such as
// CONFIG or CLIENT (Frame.Sub), the first key (Frame.Resource) and the
// argument count (Frame.Args). In the reply direction it frames one complete
// top-level reply of any RESP2 or RESP3 type per OpFrame, flags errors
// (Frame.Err) and skips RESP3 attributes and push messages (OpSkip), which do
// not answer a request.
//
// Frames are views into the caller's input: nothing is copied and a Parse
// call allocates nothing, except that the stack of open reply aggregates is
// allocated on a parser's first nested reply and grows (by doubling, up to
// Limits.MaxDepth) the first time replies nest deeper than before: an idle
// parser holds no stack, and the steady state allocates nothing. Every length read from the wire is checked against
// the Limits before it is trusted; README.md lists them with the wire format,
// the deny reply and the known gaps.
//
// Deny builds the reply for a denied command (-ERR bulkhead: …) and Sniff
// recognises a Redis client from its first bytes. Protocol bundles the three
// for protocols/all.
package redis
