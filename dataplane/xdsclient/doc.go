// Package xdsclient is bulkhead-proxy's ADS client for Bulkhead's own xDS
// resource types: the node's ProxyPolicy (subscribed by name, the node id) and
// every Identity (a wildcard subscription).
//
// # Transport
//
// The client speaks incremental ("delta") ADS over one
// DeltaAggregatedResources stream carrying both types. State-of-the-world
// cannot serve these types: for types other than Listener and Cluster a SotW
// response may carry only the resources that changed, and it has no way to say
// that one was removed (go-control-plane's LinearCache behaves exactly so), so
// a deleted pod's Identity would never leave the proxy; SotW responses also
// carry no resource names, so the ProxyPolicy's name could not be checked.
// Delta carries names, per-resource versions and removals, and on reconnect
// the client sends the versions it holds (initial_resource_versions) so that
// the server resends only what changed. go-control-plane serves it from the
// same linear caches behind a MuxCache once the mux has a ClassifyDelta.
//
// # ACK and NACK
//
// After each response the client builds the candidate state (the accepted
// state plus the response's updates and removals), checks it (every resource
// unmarshals, has the response's type, a unique name, and the ProxyPolicy is
// named after the node) and, once a ProxyPolicy is known, calls Config.Apply
// with the newest ProxyPolicy and the full identity set. If all of that
// succeeds the candidate becomes the accepted state and the client ACKs (a
// request with the response's nonce); otherwise the accepted state stays and
// the client NACKs (the nonce plus error_detail, a google.rpc.Status with code
// INVALID_ARGUMENT). A response that removes the node's own ProxyPolicy is
// ACKed but the last policy stays in force: a firewall does not fall back to
// "no policy" because its control plane forgot it.
//
// NACK storms: a server may answer a NACK by resending the rejected response
// at once. When a response of a type has the same content (names, versions,
// bytes and removals) as the response of that type that was just NACKed, the
// client waits before NACKing again, 100ms doubling up to 5s; an ACK or
// different content resets the wait.
//
// # Reconnects
//
// Stream errors are retried forever until the context ends, with exponential
// jittered backoff (200ms doubling up to 15s, each wait drawn from [d/2, d]);
// the backoff resets after a stream that delivered at least one response.
//
// # Last good configuration on disk
//
// After each accepted response that leaves a ProxyPolicy known, the client
// writes it and the identity set to CacheDir/last-good.pb (temporary file,
// fsync, rename, fsync of the directory). Start restores it before it first
// connects, so a proxy enforces its last good policy while the control plane
// is unreachable, and offers its versions to the server. LoadCache reads the
// file. Its format, all integers unsigned:
//
//	magic    8 bytes  "BHXDSC\x00\x01" (the last byte is the format version)
//	records  repeated: uvarint length n (1 ≤ n ≤ 16 MiB), then n bytes of a
//	         marshalled envoy.service.discovery.v3.Resource {name, version,
//	         resource: Any}; the first record is the ProxyPolicy (name = node
//	         id), every following one an Identity
//	trailer  4 bytes  CRC-32C (Castagnoli) of everything before it, big endian
//
// The whole file is at most 256 MiB.
package xdsclient
