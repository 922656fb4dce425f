package als

import (
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
)

// Bounds of a flow's L7 fields, as the flows server accepts them; a longer
// value is cut and ends in Cut, as bulkhead-proxy reports it.
const (
	MaxResource = 256
	MaxAux      = 128
	Cut         = "..."
)

// Reasons a flow was not allowed by a rule, as bulkhead-proxy reports them.
const (
	ReasonNoRule = "no_rule"
	ReasonL7     = "l7_not_allowed"
)

const rbacFilter = "envoy.filters.http.rbac"

// flowKey is what distinguishes two flows of one batch.
type flowKey struct {
	src, dst netip.Addr
	port     uint32
	protocol string
	verb     string
	resource string
	aux      string
	verdict  bulkheadv1.Verdict
	mode     bulkheadv1.Mode
	rule     string
	reason   string
}

// Convert turns the HTTP access log entries of node (an Envoy sidecar,
// judged under v) into ingress flows as bulkhead-proxy reports them:
// source and destination with their segments, the port and its declared
// protocol, method, path (without query), host (without port), the
// verdict under the mode the RBAC's dynamic metadata names (see
// package doc), the rule that allowed it or the reason none did. Equal
// flows of one call are aggregated (count, bytes, first and last seen).
// Entries without addresses are skipped and counted.
func Convert(node string, v *View, entries []*accesslogdatav3.HTTPAccessLogEntry, now time.Time) (flows []*bulkheadv1.Flow, skipped int) {
	pp, known := v.node(node)
	if !known {
		return nil, len(entries)
	}
	dstSeg := pp.GetNamespace() + "/" + pp.GetSegment()
	index := map[flowKey]int{}
	for _, e := range entries {
		c := e.GetCommonProperties()
		src, ok := addrOf(c.GetDownstreamDirectRemoteAddress())
		if !ok {
			src, ok = addrOf(c.GetDownstreamRemoteAddress())
		}
		dst, ok2 := addrOf(c.GetDownstreamLocalAddress())
		if !ok || !ok2 || dst.Port() == 0 {
			skipped++
			continue
		}
		port := uint32(dst.Port())
		k := flowKey{
			src: src.Addr().Unmap(), dst: dst.Addr().Unmap(), port: port,
			protocol: protocolOf(pp, port, e.GetProtocolVersion()),
			verb:     methodOf(e.GetRequest().GetRequestMethod()),
			resource: cut(pathOf(e.GetRequest().GetPath()), MaxResource),
			aux:      cut(hostOf(e.GetRequest().GetAuthority()), MaxAux),
		}
		k.mode, k.verdict, k.rule = judge(e, pp.GetMode())
		if k.rule == "" && (k.verdict != bulkheadv1.Verdict_VERDICT_ALLOW || k.mode == bulkheadv1.Mode_MODE_DISCOVER) {
			k.reason = ReasonL7
			if !v.admitted(pp, k.src, port) {
				k.reason = ReasonNoRule
			}
		}
		bytes := e.GetRequest().GetRequestHeadersBytes() + e.GetRequest().GetRequestBodyBytes() +
			e.GetResponse().GetResponseHeadersBytes() + e.GetResponse().GetResponseBodyBytes()
		at := now
		if ts := c.GetStartTime(); ts != nil && ts.IsValid() {
			at = ts.AsTime()
		}
		if i, ok := index[k]; ok {
			f := flows[i]
			f.Count++
			f.Bytes += bytes
			if at.Before(f.FirstSeen.AsTime()) {
				f.FirstSeen = timestamppb.New(at)
			}
			if at.After(f.LastSeen.AsTime()) {
				f.LastSeen = timestamppb.New(at)
			}
			continue
		}
		from, _ := v.peer(k.src)
		index[k] = len(flows)
		flows = append(flows, &bulkheadv1.Flow{
			Direction:  bulkheadv1.Direction_DIRECTION_INGRESS,
			SrcIp:      k.src.String(),
			SrcSegment: from.segment,
			DstIp:      k.dst.String(),
			DstSegment: dstSeg,
			DstPort:    port,
			Protocol:   k.protocol,
			Verb:       k.verb,
			Resource:   k.resource,
			Aux:        k.aux,
			Verdict:    k.verdict,
			Mode:       k.mode,
			Rule:       k.rule,
			Reason:     k.reason,
			Count:      1,
			Bytes:      bytes,
			FirstSeen:  timestamppb.New(at),
			LastSeen:   timestamppb.New(at),
		})
	}
	return flows, skipped
}

// judge reads the verdict from the RBAC filter's dynamic metadata. Its
// keys carry the stat prefix of the rules that produced them, which names
// the mode: enforced results (or an RBAC denial in the response details)
// are protect; shadow results prefixed envoy.ShadowPrefixMonitor monitor,
// envoy.ShadowPrefixDiscover discover. Without RBAC metadata the node's
// current mode is assumed.
func judge(e *accesslogdatav3.HTTPAccessLogEntry, current bulkheadv1.Mode) (mode bulkheadv1.Mode, verdict bulkheadv1.Verdict, rule string) {
	var enforced, enforcedPolicy, shadow, shadowPolicy, shadowPrefix string
	for k, val := range e.GetCommonProperties().GetMetadata().GetFilterMetadata()[rbacFilter].GetFields() {
		s := val.GetStringValue()
		switch {
		case strings.HasSuffix(k, "enforced_engine_result"):
			enforced = s
		case strings.HasSuffix(k, "enforced_effective_policy_id"):
			enforcedPolicy = s
		case strings.HasSuffix(k, "shadow_engine_result"):
			shadow, shadowPrefix = s, strings.TrimSuffix(k, "shadow_engine_result")
		case strings.HasSuffix(k, "shadow_effective_policy_id"):
			shadowPolicy = s
		}
	}
	rbacDenied := strings.HasPrefix(e.GetResponse().GetResponseCodeDetails(), "rbac_access_denied")
	switch {
	case enforced != "" || rbacDenied:
		mode = bulkheadv1.Mode_MODE_PROTECT
	case shadow != "" && shadowPrefix == envoy.ShadowPrefixMonitor:
		mode = bulkheadv1.Mode_MODE_MONITOR
	case shadow != "" && shadowPrefix == envoy.ShadowPrefixDiscover:
		mode = bulkheadv1.Mode_MODE_DISCOVER
	case shadow != "":
		mode = bulkheadv1.Mode_MODE_MONITOR
	default:
		mode = current
		if mode == bulkheadv1.Mode_MODE_UNSPECIFIED {
			mode = bulkheadv1.Mode_MODE_DISCOVER
		}
	}
	switch mode {
	case bulkheadv1.Mode_MODE_PROTECT:
		if enforced == "denied" || rbacDenied {
			return mode, bulkheadv1.Verdict_VERDICT_DENY, ""
		}
		return mode, bulkheadv1.Verdict_VERDICT_ALLOW, enforcedPolicy
	case bulkheadv1.Mode_MODE_MONITOR:
		if shadow == "denied" {
			return mode, bulkheadv1.Verdict_VERDICT_VIOLATION, ""
		}
		if shadow == "allowed" {
			return mode, bulkheadv1.Verdict_VERDICT_ALLOW, shadowPolicy
		}
	default:
		if shadow == "allowed" {
			return mode, bulkheadv1.Verdict_VERDICT_ALLOW, shadowPolicy
		}
	}
	return mode, bulkheadv1.Verdict_VERDICT_ALLOW, ""
}

func addrOf(a *corev3.Address) (netip.AddrPort, bool) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil || sa.GetPortValue() > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(sa.GetPortValue())), true
}

// protocolOf is the protocol the workload declares on port, else the one
// Envoy saw.
func protocolOf(pp *bulkheadv1.ProxyPolicy, port uint32, v accesslogdatav3.HTTPAccessLogEntry_HTTPVersion) string {
	for _, p := range pp.GetPorts() {
		if p.GetPort() == port && p.GetProtocol() != "" {
			return p.GetProtocol()
		}
	}
	if v == accesslogdatav3.HTTPAccessLogEntry_HTTP2 {
		return "http2"
	}
	return "http"
}

func methodOf(m corev3.RequestMethod) string {
	if m == corev3.RequestMethod_METHOD_UNSPECIFIED {
		return ""
	}
	return m.String()
}

// pathOf drops the query and fragment (Envoy's connection manager has
// already normalised the path).
func pathOf(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	return p
}

// hostOf is the authority without port, lower case.
func hostOf(a string) string {
	if strings.HasPrefix(a, "[") {
		if i := strings.IndexByte(a, ']'); i > 0 {
			return strings.ToLower(a[1:i])
		}
	}
	if i := strings.LastIndexByte(a, ':'); i >= 0 && strings.Count(a, ":") == 1 {
		a = a[:i]
	}
	return strings.ToLower(strings.TrimSuffix(a, "."))
}

// cut bounds s to max bytes of valid UTF-8; a cut value ends in Cut.
func cut(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	s = s[:max-len(Cut)]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + Cut
}
