package learn

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// refusal is why the learning bounds lb refuse a flow with peer (a segment
// key, "" for an address without one) at now, or "". mode is the store's
// effective mode of a segment.
func refusal(lb *v1alpha1.Learning, now time.Time, peer string, mode func(ns, name string) v1alpha1.Mode) string {
	if lb == nil {
		return ""
	}
	if !lb.Window.Open(now) {
		return v1alpha1.RefusedWindow
	}
	if lb.EffectiveFrom() == v1alpha1.LearnFromEnforced {
		ns, name, ok := splitKey(peer)
		if !ok {
			return v1alpha1.RefusedPeerUnknown
		}
		if m := mode(ns, name); m != v1alpha1.ModeMonitor && m != v1alpha1.ModeProtect {
			return v1alpha1.RefusedPeerLearns
		}
	}
	return ""
}

// provenance is the learnedFrom of a rule f teaches: the reporting node, the
// peer (its segment key, else its address) and the flow, with the time the
// proxy first saw it (whole seconds, as the export keeps it). Every field
// is cut to its bound.
func provenance(node, peer string, f *bulkheadv1.Flow) *v1alpha1.LearnedFrom {
	src, dst := f.SrcSegment, f.DstSegment
	if src == "" {
		src = f.SrcIp
	}
	if dst == "" {
		dst = f.DstIp
	}
	if peer == "" {
		peer = src
		if f.Direction == bulkheadv1.Direction_DIRECTION_EGRESS {
			peer = dst
		}
	}
	var b strings.Builder
	b.WriteString(src)
	b.WriteString(" -> ")
	b.WriteString(dst)
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(uint64(f.DstPort), 10))
	b.WriteByte('/')
	b.WriteString(strings.ToLower(f.Protocol))
	if f.Verb != "" {
		b.WriteByte(' ')
		b.WriteString(f.Verb)
		if f.Sub != "" {
			b.WriteByte(' ')
			b.WriteString(f.Sub)
		}
	}
	if f.Resource != "" {
		b.WriteByte(' ')
		b.WriteString(f.Resource)
	}
	lf := &v1alpha1.LearnedFrom{
		Node: cut(node, v1alpha1.MaxLearnedFromNode),
		Peer: cut(peer, v1alpha1.MaxLearnedFromNode),
		Flow: cut(b.String(), v1alpha1.MaxLearnedFromFlow),
	}
	if ts := f.GetFirstSeen(); ts != nil && ts.IsValid() {
		t := metav1.NewTime(ts.AsTime().UTC().Truncate(time.Second))
		lf.Time = &t
	}
	return lf
}

// cut bounds s to max bytes of valid UTF-8 without control characters.
func cut(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
