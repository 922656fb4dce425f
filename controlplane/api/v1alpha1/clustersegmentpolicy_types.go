package v1alpha1

import (
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KindClusterSegmentPolicy is the cluster-scoped policy's kind.
const KindClusterSegmentPolicy = "ClusterSegmentPolicy"

// ClusterRulePrefix starts the names a cluster policy's rules get in the
// segments it selects: "cluster.<policy>.<rule>".
const ClusterRulePrefix = "cluster."

// ClusterSegmentPolicy adds rules to the segments of every namespace its
// namespaceSelector selects whose workloads its selector selects: rules
// for many namespaces at once (DNS to the cluster's resolvers, monitoring
// scraping every namespace) or across namespaces. It has no mode: a
// segment's mode stays its SegmentPolicy's (else the defaults).
//
// Precedence: SegmentPolicy and ClusterSegmentPolicy rules are both
// allow-lists, compiled together: a message that any rule of either allows
// is allowed; there are no deny rules to order. In the selected segment's
// compiled policy the rule is named
// "<namespace>/<segment>/cluster.<policy>.<rule>". A peer segment without a
// namespace means the selected segment's namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cspol,categories=bulkhead
// +kubebuilder:printcolumn:name="Ingress",type=integer,JSONPath=`.status.ingressRules`
// +kubebuilder:printcolumn:name="Egress",type=integer,JSONPath=`.status.egressRules`
// +kubebuilder:printcolumn:name="Segments",type=integer,JSONPath=`.status.segments`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterSegmentPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterSegmentPolicySpec   `json:"spec"`
	Status ClusterSegmentPolicyStatus `json:"status,omitempty"`
}

// ClusterSegmentPolicySpec selects segments across namespaces and lists
// the flows allowed into and out of them.
type ClusterSegmentPolicySpec struct {
	// NamespaceSelector picks namespaces by their labels. Empty: every
	// namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// Selector picks, in those namespaces, the segments with a workload
	// whose labels match. Empty: every segment.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Ingress lists flows allowed into the selected segments.
	// +optional
	// +listType=map
	// +listMapKey=name
	Ingress []Rule `json:"ingress,omitempty"`
	// Egress lists flows allowed out of the selected segments.
	// +optional
	// +listType=map
	// +listMapKey=name
	Egress []Rule `json:"egress,omitempty"`
}

// ClusterSegmentPolicyStatus is what the control plane observed.
type ClusterSegmentPolicyStatus struct {
	// +optional
	IngressRules int32 `json:"ingressRules,omitempty"`
	// +optional
	EgressRules int32 `json:"egressRules,omitempty"`
	// Segments counts the segments the policy selects.
	// +optional
	Segments int32 `json:"segments,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ClusterSegmentPolicyList is a list of ClusterSegmentPolicy.
//
// +kubebuilder:object:root=true
type ClusterSegmentPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterSegmentPolicy `json:"items"`
}

// ClusterRuleName is the name rule r of cluster policy policy has in the
// segments it selects.
func ClusterRuleName(policy, rule string) string {
	return ClusterRulePrefix + policy + "." + rule
}

// Validate reports every problem of the cluster policy, joined, with field
// paths: its selectors, and its rules as a SegmentPolicy's; the names the
// rules get in the segments (ClusterRuleName) must fit a rule name.
func (p *ClusterSegmentPolicy) Validate() error {
	if p == nil {
		return errors.New("cluster policy: nil")
	}
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	if p.Name == "" {
		add("metadata.name", "required")
	} else if len(p.Name) > 63 || !nameRE.MatchString(p.Name) {
		add("metadata.name", "%q is not a DNS label", p.Name)
	}
	for path, sel := range map[string]*metav1.LabelSelector{"spec.namespaceSelector": p.Spec.NamespaceSelector, "spec.selector": p.Spec.Selector} {
		if sel == nil {
			continue
		}
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			add(path, "%v", err)
		}
	}
	// The rules, checked as those of a policy of some namespace.
	sp := &SegmentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "cluster", Namespace: "cluster"}}
	sp.Spec.Ingress, sp.Spec.Egress = p.Spec.Ingress, p.Spec.Egress
	if err := sp.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		path  string
		rules []Rule
	}{{"spec.ingress", p.Spec.Ingress}, {"spec.egress", p.Spec.Egress}} {
		for i, r := range d.rules {
			if n := ClusterRuleName(p.Name, r.Name); len(n) > 128 {
				add(fmt.Sprintf("%s[%d].name", d.path, i), "%q is longer than 128 characters in the segments (%d)", n, len(n))
			}
		}
	}
	return errors.Join(errs...)
}

// IsClusterRule reports whether a rule name is one a cluster policy's rule
// gets in a segment.
func IsClusterRule(name string) bool { return strings.HasPrefix(name, ClusterRulePrefix) }
