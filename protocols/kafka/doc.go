// Package kafka decodes the Apache Kafka wire protocol for Bulkhead's data
// plane, following the contract of protocols/l7.
//
// In the request direction it frames every request (int32 size, request
// header v1 or v2) and reports the API's name (Frame.Verb: "Produce",
// "Fetch", "API_<n>" for a key it does not know), the client id
// (Frame.Aux) and, for the APIs that act on topics, the topics the request
// names (Frame.Resource and Frame.More): Produce, Fetch, ListOffsets,
// Metadata, OffsetCommit, OffsetFetch, CreateTopics, DeleteTopics,
// DeleteRecords, OffsetForLeaderEpoch, AddPartitionsToTxn and
// TxnOffsetCommit, over the version ranges listed in README.md. Topic ids
// (Fetch v13+, Produce v13+, …) are resolved to names learned from the
// Metadata replies the parsers of one Protocol value have seen. Frame.Args
// holds api_key<<16 | api_version and, where int has 64 bits, the
// correlation id in the high 32 bits (APIKeyVersion, CorrelationID).
//
// In the reply direction it frames one final frame per response, in request
// order, checking each correlation id against the requests still waiting
// for an answer; response bodies are streamed (OpSkip) but for the piece
// that ends them.
//
// Deny builds the API's own response carrying TOPIC_AUTHORIZATION_FAILED
// for every topic and partition the request named (or the group, cluster,
// transactional-id or SASL error of the APIs that name no topic), with the
// request's correlation id and header version, from a summary the parser
// keeps beside the frame's Verb (for Produce and Fetch, from the request
// itself, walked again: Deny needs the parser's input unchanged since the
// frame was returned). Sniff recognises a Kafka client from its first
// request.
//
// Parsing allocates nothing in steady state: frames are views into the
// input or into buffers the parser owns. README.md lists the wire format,
// the limits and the known gaps.
package kafka
