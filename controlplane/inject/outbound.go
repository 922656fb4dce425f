package inject

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Ports of the injected proxy's outbound side and of the Envoy sidecar
// (bulkhead-proxy's and Envoy's defaults).
const (
	// OutboundPort is the proxy's outbound listener (`init
	// --outbound-port`, `run --outbound-addr`).
	OutboundPort = 15001
	// DNSPort is the proxy's DNS port (`init --dns-port`; the proxy's
	// default DNS sockets 127.0.0.1 and [::1] listen on it).
	DNSPort = 15053
	// EnvoyInboundPort is Envoy's virtual inbound listener (docs/envoy.md)
	// that the Envoy ports are redirected to (`init --envoy-port`).
	EnvoyInboundPort = 15016
	// EnvoyAdminPort is Envoy's admin port (127.0.0.1).
	EnvoyAdminPort = 15000
	// maxEnvoyPorts bounds the Envoy ports of a pod.
	maxEnvoyPorts = 64
	// maxEnvoyPortsAnnotation bounds the annotation's length.
	maxEnvoyPortsAnnotation = 512
)

// outbound reports whether outbound capture is injected (Settings.Outbound,
// default on).
func (s Settings) outbound() bool { return s.Outbound == nil || *s.Outbound }

// initArgs are bulkhead-init's arguments: inbound capture with the
// excluded ports, the Envoy ports (when any) to Envoy's inbound port, and,
// with Settings.Outbound, outbound capture that leaves the proxy's user
// alone. Envoy runs as the same user, so its own connections (to the
// control plane among them) are not captured either; neither is the
// proxy's control-plane connection.
func (w *Webhook) initArgs(envoyPorts []uint16) []string {
	args := []string{"init", "--proxy-port=" + strconv.Itoa(int(w.s.ProxyPort)), "--exclude-ports=" + w.excluded()}
	if len(envoyPorts) > 0 {
		args = append(args, "--envoy-ports="+joinPorts(envoyPorts), "--envoy-port="+strconv.Itoa(EnvoyInboundPort))
	}
	if w.s.outbound() {
		args = append(args,
			"--outbound",
			"--exclude-uid="+strconv.FormatInt(w.s.ProxyUID, 10),
			"--outbound-port="+strconv.Itoa(OutboundPort),
			"--dns-port="+strconv.Itoa(DNSPort),
		)
	}
	return args
}

// outboundArgs are the proxy's arguments for outbound capture: the
// outbound listener, the DNS proxy on its default sockets (DNSPort), and
// no mark (the proxy has no CAP_NET_ADMIN; init excludes its user).
func (w *Webhook) outboundArgs() []string {
	if !w.s.outbound() {
		return nil
	}
	return []string{"--outbound", "--outbound-unmarked", "--outbound-addr=:" + strconv.Itoa(OutboundPort)}
}

// envoyPorts returns the inbound ports redirected to the Envoy sidecar,
// sorted: those AnnotationEnvoyPorts lists ("8080,9090") when the pod has
// it, else the TCP ports of the pod's containers (and native sidecars)
// whose name says HTTP or gRPC by the usual convention
// "<protocol>[-<suffix>]" with protocol http, http2 or grpc ("http",
// "http-api", "grpc-web"; not "https", which is TLS). A container port has
// no appProtocol (only a Service port has, which the webhook does not
// see). None is an error: Envoy would receive nothing. A port the proxy
// or Envoy use, or one that is excluded, is an error too.
func (w *Webhook) envoyPorts(p *corev1.Pod) ([]uint16, error) {
	var ports []uint16
	if v, ok := p.Annotations[AnnotationEnvoyPorts]; ok {
		if len(v) > maxEnvoyPortsAnnotation {
			return nil, fmt.Errorf("inject: annotation %s is longer than %d bytes", AnnotationEnvoyPorts, maxEnvoyPortsAnnotation)
		}
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			n, err := strconv.ParseUint(f, 10, 16)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("inject: annotation %s=%q: %q is not a port", AnnotationEnvoyPorts, v, f)
			}
			ports = append(ports, uint16(n))
		}
	} else {
		serving := slices.Clone(p.Spec.Containers)
		for _, c := range p.Spec.InitContainers {
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				serving = append(serving, c) // a native sidecar; other init containers serve nothing
			}
		}
		for _, c := range serving {
			for _, cp := range c.Ports {
				if (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) && httpPortName(cp.Name) && cp.ContainerPort > 0 && cp.ContainerPort <= 65535 {
					ports = append(ports, uint16(cp.ContainerPort))
				}
			}
		}
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	switch {
	case len(ports) == 0:
		return nil, fmt.Errorf("inject: %s=envoy but no port for Envoy: list them in the annotation %s or name the container ports http*/grpc*", AnnotationSidecar, AnnotationEnvoyPorts)
	case len(ports) > maxEnvoyPorts:
		return nil, fmt.Errorf("inject: more than %d ports for Envoy", maxEnvoyPorts)
	}
	reserved := append(w.excludedPorts(), w.s.ProxyPort, EnvoyInboundPort, EnvoyAdminPort)
	if w.s.outbound() {
		reserved = append(reserved, OutboundPort, DNSPort)
	}
	for _, port := range ports {
		if slices.Contains(reserved, port) {
			return nil, fmt.Errorf("inject: port %d cannot go to Envoy: it is excluded from the redirect or one of Bulkhead's own", port)
		}
	}
	return ports, nil
}

// httpPortName reports whether a port name says HTTP or gRPC:
// "<protocol>[-<suffix>]" with protocol http, http2 or grpc.
func httpPortName(name string) bool {
	proto, _, _ := strings.Cut(name, "-")
	switch proto {
	case "http", "http2", "grpc":
		return true
	}
	return false
}

// joinPorts writes ports as "a,b,c".
func joinPorts(ports []uint16) string {
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	return b.String()
}
