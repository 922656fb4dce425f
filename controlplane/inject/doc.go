// Package inject is Bulkhead's sidecar injector: a mutating admission
// webhook (admission/v1 AdmissionReview over HTTPS) that adds to the pods
// of namespaces labelled bulkhead.io/inject=enabled
//
//   - an init container bulkhead-init running `bulkhead-proxy init` (the
//     inbound redirect; root with NET_ADMIN and NET_RAW only);
//   - bulkhead-proxy as a native sidecar (an init container with
//     restartPolicy Always) whose startupProbe is the proxy's /readyz, so
//     that the application's containers start only once the proxy has its
//     first policy; non-root, read-only root filesystem, every capability
//     dropped, seccomp RuntimeDefault;
//   - with the pod annotation bulkhead.io/sidecar: envoy, an Envoy native
//     sidecar bootstrapped (inline) as the control plane's
//     /v1/envoy/bootstrap would answer.
//
// The proxy learns its xDS node id (workload.namespace, as
// controlplane/k8s names workloads: by their owner) from the pod annotation
// bulkhead.io/node, which the webhook sets and the downward API hands to the
// proxy. A pod annotated bulkhead.io/inject: "false", a hostNetwork pod, a
// pod of kube-system or of Bulkhead's own namespace and a pod already
// injected are left alone.
//
// Certs issues and rotates the webhook's serving certificate from a CA of
// its own kept in a Secret, and keeps the caBundle of the
// MutatingWebhookConfiguration current (unless the configuration is
// annotated cert-manager.io/inject-ca-from); Serve serves a Handler over
// TLS with it.
package inject
