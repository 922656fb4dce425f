// Package capture installs the redirect that sends a workload's inbound TCP
// to bulkhead-proxy, and recovers a redirected connection's original
// destination.
//
// Install works in the current network namespace (the pod's, when run by
// `bulkhead-proxy init`) through the iptables commands: a nat chain
// BULKHEAD_INBOUND, jumped to once from PREROUTING for TCP, that returns for
// loopback, excluded ports and excluded sources and redirects everything else
// to the proxy port:
//
//	-A PREROUTING -p tcp -j BULKHEAD_INBOUND
//	-A BULKHEAD_INBOUND -i lo -j RETURN
//	-A BULKHEAD_INBOUND -p tcp --dport <excluded port> -j RETURN
//	-A BULKHEAD_INBOUND -s <excluded source> -j RETURN
//	-A BULKHEAD_INBOUND -p tcp -j REDIRECT --to-ports <proxy port>
//
// The chain's content is replaced atomically with iptables-restore --noflush
// (declare, flush, fill, commit); the jump is added only when `iptables -C`
// does not find it. The same goes for ip6tables, skipped when the kernel or
// the host has no IPv6 nat. Remove takes it all away again.
//
// OriginalDst reads SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST for IPv6) of an
// accepted connection on its own descriptor.
package capture
