package v1alpha1

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// MaxPolicyFile bounds the YAML accepted by UnmarshalYAML.
const MaxPolicyFile = 8 << 20

// ForExport returns a copy of p in the exported form: apiVersion and kind
// set, only name, namespace, labels and annotations kept in metadata, no
// status, rules sorted by name and their lists sorted, so that exporting the
// same policy always yields the same bytes.
func ForExport(p *SegmentPolicy) *SegmentPolicy {
	out := &SegmentPolicy{
		TypeMeta: TypeMetaSegmentPolicy(),
		Spec:     *p.Spec.DeepCopy(),
	}
	out.Name, out.Namespace = p.Name, p.Namespace
	if len(p.Labels) > 0 {
		out.Labels = p.DeepCopy().Labels
	}
	if len(p.Annotations) > 0 {
		out.Annotations = p.DeepCopy().Annotations
		delete(out.Annotations, "kubectl.kubernetes.io/last-applied-configuration")
		if len(out.Annotations) == 0 {
			out.Annotations = nil
		}
	}
	for _, rules := range [][]Rule{out.Spec.Ingress, out.Spec.Egress} {
		for i := range rules {
			rules[i].Normalize()
		}
		sort.SliceStable(rules, func(i, j int) bool { return rules[i].Name < rules[j].Name })
	}
	return out
}

// Normalize puts a rule in canonical form: origin defaulted to user, ports'
// protocol defaulted to tcp, ports sorted, Redis commands lower-cased,
// deduplicated and sorted, FQDN peers lower-cased without a final dot.
func (r *Rule) Normalize() {
	if r.Origin == "" {
		r.Origin = OriginUser
	}
	for i := range r.Ports {
		r.Ports[i].Protocol = r.Ports[i].EffectiveProtocol()
	}
	sort.SliceStable(r.Ports, func(i, j int) bool {
		if r.Ports[i].Port != r.Ports[j].Port {
			return r.Ports[i].Port < r.Ports[j].Port
		}
		return r.Ports[i].Protocol < r.Ports[j].Protocol
	})
	if r.Redis != nil {
		// normSet keeps nil as nil; commands stay a list ([] rather
		// than null) as before.
		if r.Redis.Commands = normSet(r.Redis.Commands, strings.ToLower); r.Redis.Commands == nil {
			r.Redis.Commands = []string{}
		}
	}
	for i := range r.Peers {
		if f := r.Peers[i].FQDN; f != "" {
			r.Peers[i].FQDN = strings.TrimSuffix(strings.ToLower(f), ".")
		}
	}
	r.normalizeMatchers()
}

// TypeMetaSegmentPolicy is the apiVersion and kind of a SegmentPolicy.
func TypeMetaSegmentPolicy() metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: KindSegmentPolicy}
}

// MarshalYAML writes policies as a multi-document YAML stream in export form
// (see ForExport), sorted by namespace and name. The output is deterministic
// and `kubectl apply -f`-able.
func MarshalYAML(policies []*SegmentPolicy) ([]byte, error) {
	sorted := make([]*SegmentPolicy, len(policies))
	copy(sorted, policies)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Namespace != sorted[j].Namespace {
			return sorted[i].Namespace < sorted[j].Namespace
		}
		return sorted[i].Name < sorted[j].Name
	})
	var buf bytes.Buffer
	for i, p := range sorted {
		b, err := yaml.Marshal(exportDoc(ForExport(p)))
		if err != nil {
			return nil, fmt.Errorf("marshal %s/%s: %w", p.Namespace, p.Name, err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// exportDoc drops the empty creationTimestamp and status that the typed
// struct would otherwise render.
func exportDoc(p *SegmentPolicy) map[string]any {
	meta := map[string]any{"name": p.Name, "namespace": p.Namespace}
	if len(p.Labels) > 0 {
		meta["labels"] = p.Labels
	}
	if len(p.Annotations) > 0 {
		meta["annotations"] = p.Annotations
	}
	return map[string]any{
		"apiVersion": p.APIVersion,
		"kind":       p.Kind,
		"metadata":   meta,
		"spec":       p.Spec,
	}
}

// UnmarshalYAML reads a multi-document YAML stream of SegmentPolicy objects
// (a kubectl List of them is accepted too). Unknown fields, other kinds and
// documents without a name are errors that name the document. Empty documents
// are skipped. The policies are not validated: call Validate.
func UnmarshalYAML(data []byte) ([]*SegmentPolicy, error) {
	if len(data) > MaxPolicyFile {
		return nil, fmt.Errorf("policy file is %d bytes, at most %d", len(data), MaxPolicyFile)
	}
	var out []*SegmentPolicy
	for i, doc := range splitYAML(data) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		switch {
		case tm.Kind == "SegmentPolicyList" || tm.Kind == "List":
			var l struct {
				Items []SegmentPolicy `json:"items"`
			}
			if err := yaml.UnmarshalStrict(doc, &struct {
				metav1.TypeMeta `json:",inline"`
				Metadata        map[string]any   `json:"metadata,omitempty"`
				Items           *[]SegmentPolicy `json:"items"`
			}{Items: &l.Items}); err != nil {
				return nil, fmt.Errorf("document %d: %w", i+1, err)
			}
			for j := range l.Items {
				if err := checkTypeMeta(l.Items[j].TypeMeta); err != nil {
					return nil, fmt.Errorf("document %d, item %d: %w", i+1, j+1, err)
				}
				out = append(out, &l.Items[j])
			}
		default:
			if err := checkTypeMeta(tm); err != nil {
				return nil, fmt.Errorf("document %d: %w", i+1, err)
			}
			var p SegmentPolicy
			if err := yaml.UnmarshalStrict(doc, &p); err != nil {
				return nil, fmt.Errorf("document %d: %w", i+1, err)
			}
			out = append(out, &p)
		}
	}
	return out, nil
}

func checkTypeMeta(tm metav1.TypeMeta) error {
	if tm.Kind != KindSegmentPolicy {
		return fmt.Errorf("kind %q, want %s", tm.Kind, KindSegmentPolicy)
	}
	if tm.APIVersion != GroupVersion.String() {
		return fmt.Errorf("apiVersion %q, want %s", tm.APIVersion, GroupVersion.String())
	}
	return nil
}

// splitYAML splits a stream on lines that are exactly "---" (optionally
// followed by spaces or a comment).
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	start := 0
	lines := bytes.SplitAfter(data, []byte("\n"))
	pos := 0
	for _, l := range lines {
		t := bytes.TrimRight(l, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) || bytes.HasPrefix(t, []byte("---#")) {
			docs = append(docs, data[start:pos])
			start = pos + len(l)
		}
		pos += len(l)
	}
	return append(docs, data[start:])
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
		}
	}
	return out
}
