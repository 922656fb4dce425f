package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"
)

// Labels, annotations and names of the injection. docs/contracts.md lists
// them; deploy/ uses the same.
const (
	// LabelInject on a Namespace, value "enabled", opts its pods in (the
	// webhook configuration's namespaceSelector).
	LabelInject = "bulkhead.io/inject"
	// AnnotationInject on a pod, value "false", opts it out.
	AnnotationInject = "bulkhead.io/inject"
	// AnnotationSidecar on a pod, value "envoy", adds an Envoy sidecar
	// (the same annotation controlplane/k8s reads).
	AnnotationSidecar = "bulkhead.io/sidecar"
	// AnnotationNode is set by the webhook to the proxy's xDS node id,
	// "workload.namespace"; the proxy reads it through the downward API.
	// A pod that has it keeps its value (an operator may set it).
	AnnotationNode = "bulkhead.io/node"
	// AnnotationInjected is set by the webhook to the injector's version:
	// a pod that has it is not injected again.
	AnnotationInjected = "bulkhead.io/injected"
	// AnnotationEnvoyPorts on a pod, "8080,9090", names the inbound ports
	// redirected to the Envoy sidecar (with AnnotationSidecar "envoy");
	// without it, the containers' TCP ports named http, http2 or grpc,
	// alone or with a "-suffix" (outbound.go).
	AnnotationEnvoyPorts = "bulkhead.io/envoy-ports"

	// InitName, ProxyName and EnvoyName are the injected containers.
	InitName  = "bulkhead-init"
	ProxyName = "bulkhead-proxy"
	EnvoyName = "bulkhead-envoy"

	// Volumes: VolumeCache (emptyDir, the proxy's last good configuration),
	// VolumeRun (emptyDir, /run of bulkhead-init for the xtables lock),
	// VolumeToken (a projected service-account token, audience
	// TokenAudience, for the proxy's mutual TLS with the control plane) and
	// VolumeCA (the control plane's CA bundle, ConfigMap CAConfigMap, key
	// CAKey; optional, so that pods start before mTLS is deployed).
	VolumeCache = "bulkhead-cache"
	VolumeRun   = "bulkhead-run"
	VolumeToken = "bulkhead-token"
	VolumeCA    = "bulkhead-ca"

	// TokenAudience is the audience of the projected token.
	TokenAudience = "bulkhead"
	// TokenDir, TokenFile: where the token is mounted (read-only).
	TokenDir  = "/var/run/secrets/bulkhead/tokens"
	TokenFile = TokenDir + "/token"
	// CAConfigMap (in the pod's namespace) and CAKey hold the CA bundle,
	// mounted read-only at CADir; CAFile is the file.
	CAConfigMap = "bulkhead-ca"
	CAKey       = "ca.crt"
	CADir       = "/var/run/secrets/bulkhead/ca"
	CAFile      = CADir + "/" + CAKey
	// CacheDir is where VolumeCache is mounted (the proxy's --cache-dir).
	CacheDir = "/var/lib/bulkhead"

	// EnvNode is the proxy's environment variable holding the node id.
	EnvNode = "BULKHEAD_NODE"
	// Version is written into AnnotationInjected.
	Version = "v1"
)

// Settings say what is injected. Zero fields take the Default* values.
type Settings struct {
	// ProxyImage runs bulkhead-init and bulkhead-proxy. Required.
	ProxyImage string `json:"proxyImage"`
	// EnvoyImage runs the Envoy sidecar (default DefaultEnvoyImage).
	EnvoyImage string `json:"envoyImage,omitempty"`
	// PullPolicy of the injected containers ("": the cluster's default).
	PullPolicy corev1.PullPolicy `json:"pullPolicy,omitempty"`
	// XDSAddr is the control plane's gRPC address as pods reach it,
	// "host:port". Required.
	XDSAddr string `json:"xdsAddr"`
	// ProxyUID is the proxy's (and Envoy's) user and group id, not root
	// (default 1337).
	ProxyUID int64 `json:"proxyUID,omitempty"`
	// ProxyPort is the proxy's inbound port (15006), AdminPort its admin
	// port (15090; never redirected: kubelet probes it).
	ProxyPort uint16 `json:"proxyPort,omitempty"`
	AdminPort uint16 `json:"adminPort,omitempty"`
	// ExcludeInboundPorts are inbound ports not redirected, besides the
	// admin port (and Envoy's admin port).
	ExcludeInboundPorts []uint16 `json:"excludeInboundPorts,omitempty"`
	// ProxyResources, EnvoyResources (default DefaultProxyResources,
	// DefaultEnvoyResources); InitResources for bulkhead-init.
	ProxyResources corev1.ResourceRequirements `json:"proxyResources,omitempty"`
	EnvoyResources corev1.ResourceRequirements `json:"envoyResources,omitempty"`
	InitResources  corev1.ResourceRequirements `json:"initResources,omitempty"`
	// MTLS passes --ca-file and --token-file to the proxy (else
	// --insecure: plaintext xDS, for control planes run with --insecure).
	// The volumes are mounted whether or not.
	MTLS bool `json:"mtls,omitempty"`
	// LogLevel of the proxy ("": info).
	LogLevel string `json:"logLevel,omitempty"`
	// SystemNamespace is Bulkhead's own namespace: never injected.
	SystemNamespace string `json:"systemNamespace,omitempty"`
	// Outbound captures the pod's outbound TCP and DNS too, so that its
	// segment's egress rules are enforced at its own sidecar (nil: true).
	// The redirect leaves the proxy's user (ProxyUID) alone rather than a
	// mark, so the proxy needs no capability (outbound.go).
	Outbound *bool `json:"outbound,omitempty"`
}

// Defaults.
const (
	DefaultEnvoyImage = "envoyproxy/envoy:v1.36-latest"
	DefaultProxyUID   = 1337
	DefaultProxyPort  = 15006
	DefaultAdminPort  = 15090
)

// DefaultProxyResources are the proxy's requests and limits by default.
func DefaultProxyResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
}

// DefaultEnvoyResources are Envoy's requests and limits by default.
func DefaultEnvoyResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
	}
}

// withDefaults fills zero fields.
func (s Settings) withDefaults() Settings {
	if s.EnvoyImage == "" {
		s.EnvoyImage = DefaultEnvoyImage
	}
	if s.ProxyUID == 0 {
		s.ProxyUID = DefaultProxyUID
	}
	if s.ProxyPort == 0 {
		s.ProxyPort = DefaultProxyPort
	}
	if s.AdminPort == 0 {
		s.AdminPort = DefaultAdminPort
	}
	if s.ProxyResources.Requests == nil && s.ProxyResources.Limits == nil {
		s.ProxyResources = DefaultProxyResources()
	}
	if s.EnvoyResources.Requests == nil && s.EnvoyResources.Limits == nil {
		s.EnvoyResources = DefaultEnvoyResources()
	}
	if s.InitResources.Requests == nil && s.InitResources.Limits == nil {
		s.InitResources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		}
	}
	return s
}

// Validate reports what is wrong with the settings.
func (s Settings) Validate() error {
	var errs []error
	if s.ProxyImage == "" {
		errs = append(errs, errors.New("proxy image is empty"))
	}
	if s.XDSAddr == "" {
		errs = append(errs, errors.New("xds address is empty"))
	} else if i := strings.LastIndexByte(s.XDSAddr, ':'); i <= 0 {
		errs = append(errs, fmt.Errorf("xds address %q is not host:port", s.XDSAddr))
	} else if p, err := strconv.ParseUint(s.XDSAddr[i+1:], 10, 16); err != nil || p == 0 {
		errs = append(errs, fmt.Errorf("xds address %q: bad port", s.XDSAddr))
	}
	if s.ProxyUID < 0 || s.ProxyUID > 1<<31-1 {
		errs = append(errs, fmt.Errorf("proxy uid %d is out of range", s.ProxyUID))
	}
	for _, p := range s.ExcludeInboundPorts {
		if p == 0 {
			errs = append(errs, errors.New("exclude inbound ports: 0 is not a port"))
		}
	}
	switch s.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level %q is not debug, info, warn or error", s.LogLevel))
	}
	if s.SystemNamespace != "" && len(validation.IsDNS1123Label(s.SystemNamespace)) > 0 {
		errs = append(errs, fmt.Errorf("system namespace %q is not a DNS label", s.SystemNamespace))
	}
	if len(errs) > 0 {
		return fmt.Errorf("inject settings: %w", errors.Join(errs...))
	}
	return nil
}

// ParseSettings reads Settings from YAML or JSON (the keys are the json
// tags; unknown keys are errors) and validates them.
func ParseSettings(data []byte) (Settings, error) {
	var s Settings
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return Settings{}, fmt.Errorf("inject settings: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// Options of a Webhook. The zero value is usable.
type Options struct {
	// Reader, when set, is used to check the namespace's LabelInject
	// label (a read error fails the admission: an opted-in pod is never
	// created unprotected) and to follow a Job to its CronJob and a
	// ReplicaSet to its Deployment when the pod's own metadata does not
	// tell (nil: no label check, the pod-template-hash rule alone).
	Reader client.Reader
}

// Webhook injects the sidecars. It is an admission.Handler; Handler
// returns it as an http.Handler for AdmissionReview requests.
type Webhook struct {
	s    Settings
	log  *slog.Logger
	opts Options
}

var _ admission.Handler = (*Webhook)(nil)

// New returns a Webhook injecting as s says.
func New(s Settings, log *slog.Logger, opts Options) (*Webhook, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &Webhook{s: s.withDefaults(), log: log, opts: opts}, nil
}

// Handler returns the http.Handler that serves admission/v1
// AdmissionReview requests (POST, JSON) with w.
func (w *Webhook) Handler() http.Handler {
	return &admission.Webhook{Handler: w}
}

// Handle answers one admission request: a JSONPatch that injects, or an
// allowed response without a patch when the pod is left alone.
func (w *Webhook) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" {
		return admission.Allowed("not a pod")
	}
	if req.SubResource != "" {
		return admission.Allowed("subresource")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))
	}
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	if why := w.skip(&pod, ns); why != "" {
		return admission.Allowed(why)
	}
	if w.opts.Reader != nil {
		// The configuration's namespaceSelector decides; checked again in
		// case the configuration was edited.
		var n corev1.Namespace
		if err := w.opts.Reader.Get(ctx, client.ObjectKey{Name: ns}, &n); err != nil {
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("read namespace %s: %w", ns, err))
		}
		if n.Labels[LabelInject] != "enabled" {
			return admission.Allowed("namespace not labelled " + LabelInject + "=enabled")
		}
	}
	node := pod.Annotations[AnnotationNode]
	if node == "" {
		name := w.workload(ctx, &pod, ns)
		node = identity.NodeID(identity.Workload{Name: name, Namespace: ns})
	}
	mutated := pod.DeepCopy()
	if err := w.Inject(mutated, node); err != nil {
		w.log.Warn("inject: pod not injected", "namespace", ns, "pod", podName(&pod), "err", err)
		return admission.Errored(http.StatusBadRequest, err)
	}
	out, err := json.Marshal(mutated)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode pod: %w", err))
	}
	w.log.Debug("inject: injected", "namespace", ns, "pod", podName(&pod), "node", node)
	// The patch is computed against the object as sent, so that fields
	// this package's types do not know are left as they are.
	return admission.PatchResponseFromRaw(req.Object.Raw, out)
}

// skip returns why a pod is left alone, "" when it is injected.
func (w *Webhook) skip(p *corev1.Pod, ns string) string {
	switch {
	case ns == metav1.NamespaceSystem || ns == "kube-public" || ns == "kube-node-lease":
		return "system namespace"
	case w.s.SystemNamespace != "" && ns == w.s.SystemNamespace:
		return "bulkhead's namespace"
	case strings.EqualFold(p.Annotations[AnnotationInject], "false"):
		return "opted out"
	case p.Spec.HostNetwork:
		return "host network"
	case p.Annotations[AnnotationInjected] != "" || hasContainer(p.Spec.InitContainers, ProxyName) || hasContainer(p.Spec.Containers, ProxyName):
		return "already injected"
	}
	return ""
}

func hasContainer(cs []corev1.Container, name string) bool {
	return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == name })
}

func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName + "*"
}

// workload names the pod's workload as controlplane/k8s does: by its
// controller (ReplicaSet → Deployment, Job → CronJob), a bare pod by its
// app.kubernetes.io/name or app label, else its name.
func (w *Webhook) workload(ctx context.Context, p *corev1.Pod, ns string) string {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		for _, l := range []string{"app.kubernetes.io/name", "app"} {
			if v := p.Labels[l]; v != "" && len(validation.IsDNS1123Label(v)) == 0 {
				return v
			}
		}
		if p.Name != "" {
			return dnsLabel(p.Name)
		}
		return dnsLabel(strings.TrimSuffix(p.GenerateName, "-"))
	}
	switch ref.Kind {
	case "ReplicaSet":
		if h := p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; h != "" {
			if d, ok := strings.CutSuffix(ref.Name, "-"+h); ok && d != "" {
				return dnsLabel(d)
			}
		}
		if w.opts.Reader != nil {
			var rs appsv1.ReplicaSet
			if err := w.opts.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, &rs); err == nil {
				if o := metav1.GetControllerOf(&rs); o != nil && o.Kind == "Deployment" {
					return dnsLabel(o.Name)
				}
			} else if !apierrors.IsNotFound(err) {
				w.log.Warn("inject: read replicaset", "namespace", ns, "name", ref.Name, "err", err)
			}
		}
	case "Job":
		if w.opts.Reader != nil {
			var j batchv1.Job
			if err := w.opts.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, &j); err == nil {
				if o := metav1.GetControllerOf(&j); o != nil && o.Kind == "CronJob" {
					return dnsLabel(o.Name)
				}
			} else if !apierrors.IsNotFound(err) {
				w.log.Warn("inject: read job", "namespace", ns, "name", ref.Name, "err", err)
			}
		}
	}
	return dnsLabel(ref.Name)
}

// dnsLabel cuts a name to 63 characters without a final dash (owner names
// may be DNS subdomains up to 253).
func dnsLabel(s string) string {
	s = strings.ToLower(s)
	s = strings.ReplaceAll(s, ".", "-")
	if len(s) > validation.DNS1123LabelMaxLength {
		s = s[:validation.DNS1123LabelMaxLength]
	}
	return strings.TrimRight(s, "-")
}

// Inject adds Bulkhead's containers and volumes to p, in place, with the
// given xDS node id: bulkhead-init and the bulkhead-proxy sidecar (and
// Envoy when annotated) go before the pod's own init containers. It does
// not check whether p should be injected (Handle does).
func (w *Webhook) Inject(p *corev1.Pod, node string) error {
	if node == "" || len(node) > 253 {
		return fmt.Errorf("inject: node id %q: empty or longer than 253 bytes", node)
	}
	envoySidecar := false
	switch v := p.Annotations[AnnotationSidecar]; v {
	case "", identity.SidecarGRPC:
	case identity.SidecarEnvoy:
		envoySidecar = true
	default:
		return fmt.Errorf("inject: annotation %s=%q is not %q or %q", AnnotationSidecar, v, identity.SidecarEnvoy, identity.SidecarGRPC)
	}
	for _, v := range []string{VolumeCache, VolumeRun, VolumeToken, VolumeCA} {
		if slices.ContainsFunc(p.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == v }) {
			return fmt.Errorf("inject: the pod already has a volume %q", v)
		}
	}
	for _, c := range []string{InitName, EnvoyName} {
		if hasContainer(p.Spec.InitContainers, c) || hasContainer(p.Spec.Containers, c) {
			return fmt.Errorf("inject: the pod already has a container %q", c)
		}
	}
	var envoyPorts []uint16
	if envoySidecar {
		var err error
		if envoyPorts, err = w.envoyPorts(p); err != nil {
			return err
		}
	}
	inits := []corev1.Container{w.initContainer(envoyPorts), w.proxyContainer()}
	if envoySidecar {
		c, err := w.envoyContainer(node)
		if err != nil {
			return err
		}
		inits = append(inits, c)
	}
	p.Spec.InitContainers = append(inits, p.Spec.InitContainers...)
	if p.Spec.ServiceAccountName == "" && p.Spec.DeprecatedServiceAccount == "" {
		// A projected token needs the name; "default" is what the
		// ServiceAccount admission plugin would set.
		p.Spec.ServiceAccountName = "default"
	}
	expiry := int64(3600)
	p.Spec.Volumes = append(p.Spec.Volumes,
		corev1.Volume{Name: VolumeCache, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr(resource.MustParse("16Mi"))}}},
		corev1.Volume{Name: VolumeRun, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("1Mi"))}}},
		corev1.Volume{Name: VolumeToken, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
			ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: TokenAudience, ExpirationSeconds: &expiry, Path: "token"},
		}}}}},
		corev1.Volume{Name: VolumeCA, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: CAConfigMap}, Optional: ptr(true),
			Items: []corev1.KeyToPath{{Key: CAKey, Path: CAKey}},
		}}},
	)
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[AnnotationNode] = node
	p.Annotations[AnnotationInjected] = Version
	return nil
}

func ptr[T any](v T) *T { return &v }

func intstrPort(p uint16) intstr.IntOrString { return intstr.FromInt32(int32(p)) }

// excludedPorts returns the inbound ports bulkhead-init leaves alone,
// sorted: the admin port (kubelet probes it) and ExcludeInboundPorts.
func (w *Webhook) excludedPorts() []uint16 {
	ports := append([]uint16{w.s.AdminPort}, w.s.ExcludeInboundPorts...)
	slices.Sort(ports)
	return slices.Compact(ports)
}

// excluded is excludedPorts as a flag value.
func (w *Webhook) excluded() string { return joinPorts(w.excludedPorts()) }

func (w *Webhook) initContainer(envoyPorts []uint16) corev1.Container {
	return corev1.Container{
		Name:            InitName,
		Image:           w.s.ProxyImage,
		ImagePullPolicy: w.s.PullPolicy,
		Args:            w.initArgs(envoyPorts), // outbound.go
		Resources:       w.s.InitResources,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		VolumeMounts:             []corev1.VolumeMount{{Name: VolumeRun, MountPath: "/run"}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// restricted is the security context of the sidecars.
func (w *Webhook) restricted() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsUser:                ptr(w.s.ProxyUID),
		RunAsGroup:               ptr(w.s.ProxyUID),
		RunAsNonRoot:             ptr(true),
		Privileged:               ptr(false),
		AllowPrivilegeEscalation: ptr(false),
		ReadOnlyRootFilesystem:   ptr(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func (w *Webhook) proxyContainer() corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	admin := strconv.Itoa(int(w.s.AdminPort))
	args := []string{
		"run",
		"--node=$(" + EnvNode + ")",
		"--xds-addr=" + w.s.XDSAddr,
		"--inbound-addr=:" + strconv.Itoa(int(w.s.ProxyPort)),
		"--admin-addr=:" + admin,
		"--cache-dir=" + CacheDir,
	}
	if w.s.LogLevel != "" {
		args = append(args, "--log-level="+w.s.LogLevel)
	}
	if w.s.MTLS {
		args = append(args, "--ca-file="+CAFile, "--token-file="+TokenFile)
	} else {
		args = append(args, "--insecure")
	}
	args = append(args, w.outboundArgs()...) // outbound.go
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstrPort(w.s.AdminPort)}},
			PeriodSeconds:    period,
			FailureThreshold: failures,
			TimeoutSeconds:   1,
		}
	}
	return corev1.Container{
		Name:            ProxyName,
		Image:           w.s.ProxyImage,
		ImagePullPolicy: w.s.PullPolicy,
		RestartPolicy:   &always,
		Args:            args,
		Env: []corev1.EnvVar{{Name: EnvNode, ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + AnnotationNode + "']"},
		}}},
		Ports: []corev1.ContainerPort{{Name: "bulkhead-admin", ContainerPort: int32(w.s.AdminPort), Protocol: corev1.ProtocolTCP}},
		// The application's containers start once the proxy holds its
		// first policy (up to 10 minutes).
		StartupProbe:    probe("/readyz", 1, 600),
		ReadinessProbe:  probe("/readyz", 5, 3),
		LivenessProbe:   probe("/healthz", 10, 3),
		Resources:       w.s.ProxyResources,
		SecurityContext: w.restricted(),
		VolumeMounts: []corev1.VolumeMount{
			{Name: VolumeCache, MountPath: CacheDir},
			{Name: VolumeToken, MountPath: TokenDir, ReadOnly: true},
			{Name: VolumeCA, MountPath: CADir, ReadOnly: true},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func (w *Webhook) envoyContainer(node string) (corev1.Container, error) {
	b, err := envoy.Bootstrap(envoy.BootstrapOptions{Node: node, ControlPlane: w.s.XDSAddr})
	if err != nil {
		return corev1.Container{}, fmt.Errorf("inject: envoy bootstrap: %w", err)
	}
	js, err := envoy.MarshalJSON(b)
	if err != nil {
		return corev1.Container{}, fmt.Errorf("inject: envoy bootstrap: %w", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, js); err != nil {
		return corev1.Container{}, fmt.Errorf("inject: envoy bootstrap: %w", err)
	}
	always := corev1.ContainerRestartPolicyAlways
	return corev1.Container{
		Name:            EnvoyName,
		Image:           w.s.EnvoyImage,
		ImagePullPolicy: w.s.PullPolicy,
		RestartPolicy:   &always,
		Command:         []string{"envoy"},
		// The bootstrap the control plane's /v1/envoy/bootstrap serves for
		// this node, inline (JSON is YAML).
		Args:  []string{"--config-yaml", compact.String(), "--log-level", "warn", "--disable-hot-restart"},
		Ports: []corev1.ContainerPort{{Name: "envoy-inbound", ContainerPort: EnvoyInboundPort, Protocol: corev1.ProtocolTCP}},
		StartupProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstrPort(EnvoyInboundPort)}},
			PeriodSeconds:    1,
			FailureThreshold: 600,
		},
		Resources:                w.s.EnvoyResources,
		SecurityContext:          w.restricted(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}, nil
}
