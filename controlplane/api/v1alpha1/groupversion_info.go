// Package v1alpha1 holds the Bulkhead custom resources (group
// bulkhead.io, version v1alpha1) as Go types with kubebuilder markers. The
// CRD YAML in deploy/crds and zz_generated.deepcopy.go are generated from them
// by `make generate`.
//
// +kubebuilder:object:generate=true
// +groupName=bulkhead.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of these types.
var GroupVersion = schema.GroupVersion{Group: "bulkhead.io", Version: "v1alpha1"}

// Kind names.
const (
	KindSegmentPolicy = "SegmentPolicy"
)

// AddToScheme registers the types with a runtime.Scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &SegmentPolicy{}, &SegmentPolicyList{}, &ClusterSegmentPolicy{}, &ClusterSegmentPolicyList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
