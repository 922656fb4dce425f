// Package k8s is the control plane's Kubernetes side: a Cluster reads the
// workloads (Pods and their owners: ReplicaSet → Deployment, Job → CronJob,
// StatefulSet, DaemonSet; Services' appProtocol for port protocols), the
// namespaces' default modes and the SegmentPolicy objects from informers,
// producing the same identity.Workload list and policies that the
// standalone workloads file and policy folder give, so that
// controlplane/compile is fed the same way; and it writes SegmentPolicy
// objects with server-side apply, learned rules under their own field
// manager (FieldManagerLearner) so that the rules a person or GitOps owns
// are never changed.
//
// The API server is the state: nothing is kept outside it. Reads come from
// informers (Start runs them); writes and the reads they depend on go to
// the API server directly.
package k8s
