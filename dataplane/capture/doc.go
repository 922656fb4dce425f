// Package capture installs the redirect that sends a workload's inbound TCP
// (and, optionally, its outbound TCP and DNS) to bulkhead-proxy, and
// recovers a redirected connection's original destination.
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
//	-A BULKHEAD_INBOUND -p tcp --dport <envoy port> -j REDIRECT --to-ports <envoy listener>
//	-A BULKHEAD_INBOUND -p tcp -j REDIRECT --to-ports <proxy port>
//
// Config.EnvoyPorts (`init --envoy-ports`) go to an Envoy sidecar's virtual
// inbound listener (Config.EnvoyPort, 15016, `use_original_dst`) instead of
// the proxy: HTTP ports judged by Envoy, the rest by bulkhead-proxy. A port
// cannot be both excluded and sent to Envoy.
//
// The chain's content is replaced atomically with iptables-restore --noflush
// (declare, flush, fill, commit); the jump is added only when `iptables -C`
// does not find it. The same goes for ip6tables, skipped when the kernel or
// the host has no IPv6 nat. Remove takes it all away again.
//
// # Outbound
//
// With Config.Outbound set (`bulkhead-proxy init --outbound`), Install also
// fills a nat chain BULKHEAD_OUTBOUND, jumped to from OUTPUT, so that the
// workload's egress rules apply at its own sidecar:
//
//	-A OUTPUT -j BULKHEAD_OUTBOUND
//	-A BULKHEAD_OUTBOUND -m owner --uid-owner <uid> -j RETURN
//	-A BULKHEAD_OUTBOUND -m mark --mark <mark> -j RETURN
//	-A BULKHEAD_OUTBOUND -o lo -j RETURN
//	-A BULKHEAD_OUTBOUND -p tcp --dport <excluded port> -j RETURN
//	-A BULKHEAD_OUTBOUND -d <excluded destination> -j RETURN
//	-A BULKHEAD_OUTBOUND -p udp --dport 53 -j REDIRECT --to-ports <dns port>
//	-A BULKHEAD_OUTBOUND -p tcp -j REDIRECT --to-ports <outbound port>
//
// The proxy's own traffic (its upstream connections, its DNS forwarding and
// its control-plane connection) must not be redirected again. Two ways,
// either or both: the proxy runs as a user of its own and the chain returns
// for sockets that user owns (Outbound.ExcludeUID, `init --exclude-uid`;
// the proxy needs no capability, which is why the injected sidecar, run as
// 1337 with every capability dropped, uses it, and Envoy run as the same
// user is left alone too), or its sockets carry a mark (SO_MARK,
// MarkControl; Outbound.Mark, `init --mark`), which needs no dedicated
// user but needs CAP_NET_ADMIN in the proxy's container. Loopback is left alone (the inbound proxy reaches the workload
// over it; a resolver inside the pod asks its own upstream, which is
// captured). REDIRECT in OUTPUT sends a connection to 127.0.0.1 (::1) at the
// proxy's port: SO_ORIGINAL_DST gives the outbound TCP connection's original
// destination as for inbound. A redirected UDP datagram has no such socket
// option (IP_RECVORIGDSTADDR works for TPROXY only), so the DNS proxy
// forwards queries to a configured nameserver (by default the first of the
// namespace's /etc/resolv.conf, which is where the workload was sending
// them) and answers from the socket that received the query: conntrack
// turns the reply's source back into the address the workload asked.
//
// OriginalDst reads SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST for IPv6) of an
// accepted connection on its own descriptor.
package capture
