// Package identity maps workload IPs to workloads and their segments. In a
// cluster the facts come from the Kubernetes API; standalone they come from a
// YAML file read by LoadFile or Parse:
//
//	workloads:
//	- name: redis
//	  namespace: demo
//	  segment: redis        # optional, defaults to name
//	  ips: [198.18.0.10]
//	  labels: {app: redis}
//	  ports: [{port: 6379, protocol: redis}]
//	  sidecar: envoy        # optional: "envoy" or "grpc" (see Workload.Sidecar)
//
// A Table is immutable once built and safe for concurrent use.
package identity

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// MaxFile bounds the size of a workloads file.
const MaxFile = 8 << 20

// Workload is one workload: a pod, or outside Kubernetes any process with an
// IP.
type Workload struct {
	Name      string
	Namespace string
	// Segment is the name of the segment the workload belongs to unless a
	// policy's selector claims it (see controlplane/compile).
	Segment string
	// IPs are the workload's addresses, sorted.
	IPs    []netip.Addr
	Labels map[string]string
	// Ports are the inbound ports the workload declares, sorted by port.
	Ports []Port
	// Sidecar names the xDS consumer that serves the workload's HTTP and
	// gRPC ports besides bulkhead-proxy: SidecarEnvoy, SidecarGRPC, or ""
	// (none: the workload gets only Bulkhead's own resources).
	Sidecar string
}

// Sidecar kinds (Workload.Sidecar).
const (
	// SidecarEnvoy: an Envoy sidecar that gets an inbound listener with RBAC
	// and access logs (controlplane/envoy).
	SidecarEnvoy = "envoy"
	// SidecarGRPC: a proxyless gRPC application (gRPC-Go's xds package) that
	// gets the same listener and RBAC for its xDS server and routes for
	// xds:/// targets.
	SidecarGRPC = "grpc"
)

// Port is an inbound port of a workload and the protocol spoken on it.
type Port struct {
	Port     uint16
	Protocol string
}

// Key is the workload's "namespace/name".
func (w Workload) Key() string { return w.Namespace + "/" + w.Name }

// NodeID is the xDS node id of the workload's proxy: "name.namespace".
func NodeID(w Workload) string { return w.Name + "." + w.Namespace }

// Table is an immutable set of workloads indexed by IP.
type Table struct {
	workloads []Workload // sorted by namespace, name
	byIP      map[netip.Addr]int
}

// Workloads returns a copy of every workload, sorted by namespace and name.
// The caller owns the result.
func (t *Table) Workloads() []Workload {
	out := make([]Workload, len(t.workloads))
	for i, w := range t.workloads {
		out[i] = w.clone()
	}
	return out
}

// Lookup returns a copy of the workload that owns ip.
func (t *Table) Lookup(ip netip.Addr) (Workload, bool) {
	i, ok := t.byIP[ip.Unmap()]
	if !ok {
		return Workload{}, false
	}
	return t.workloads[i].clone(), true
}

func (w Workload) clone() Workload {
	w.IPs = slices.Clone(w.IPs)
	w.Ports = slices.Clone(w.Ports)
	if w.Labels != nil {
		l := make(map[string]string, len(w.Labels))
		for k, v := range w.Labels {
			l[k] = v
		}
		w.Labels = l
	}
	return w
}

// LoadFile reads and validates a workloads file.
func LoadFile(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load workloads: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFile+1))
	if err != nil {
		return nil, fmt.Errorf("load workloads %s: %w", path, err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load workloads %s: %w", path, err)
	}
	return t, nil
}

type fileDoc struct {
	Workloads []fileWorkload `json:"workloads"`
}

type fileWorkload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Segment   string            `json:"segment,omitempty"`
	IPs       []string          `json:"ips"`
	Labels    map[string]string `json:"labels,omitempty"`
	Ports     []filePort        `json:"ports,omitempty"`
	Sidecar   string            `json:"sidecar,omitempty"`
}

type filePort struct {
	Port     int64  `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Parse reads a workloads file's content strictly (unknown fields are
// errors) and validates it: names, namespaces and segments are DNS labels,
// every IP parses and belongs to one workload only, ports are 1-65535 with a
// known protocol ("tcp" when empty), sidecar is empty, "envoy" or "grpc".
// Every problem is reported, joined.
func Parse(data []byte) (*Table, error) {
	if len(data) > MaxFile {
		return nil, fmt.Errorf("workloads file is %d bytes, at most %d", len(data), MaxFile)
	}
	var doc fileDoc
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("parse workloads: %w", err)
	}
	var errs []error
	t := &Table{byIP: make(map[netip.Addr]int)}
	owner := make(map[netip.Addr]string)
	seen := make(map[string]int)
	for i, fw := range doc.Workloads {
		path := fmt.Sprintf("workloads[%d]", i)
		add := func(field, format string, a ...any) {
			errs = append(errs, fmt.Errorf("%s%s: %s", path, field, fmt.Sprintf(format, a...)))
		}
		checkLabel := func(field, v string) {
			if v == "" {
				add(field, "required")
			} else if msgs := validation.IsDNS1123Label(v); len(msgs) > 0 {
				add(field, "%q is not a DNS label", v)
			}
		}
		checkLabel(".name", fw.Name)
		checkLabel(".namespace", fw.Namespace)
		w := Workload{Name: fw.Name, Namespace: fw.Namespace, Segment: fw.Segment, Sidecar: fw.Sidecar}
		switch fw.Sidecar {
		case "", SidecarEnvoy, SidecarGRPC:
		default:
			add(".sidecar", "%q is not a sidecar (want %q or %q)", fw.Sidecar, SidecarEnvoy, SidecarGRPC)
		}
		if w.Segment == "" {
			w.Segment = w.Name
		} else {
			checkLabel(".segment", w.Segment)
		}
		key := w.Key()
		if j, dup := seen[key]; dup {
			add("", "workload %s repeats workloads[%d]", key, j)
		}
		seen[key] = i
		if len(fw.IPs) == 0 {
			add(".ips", "at least one IP is required")
		}
		for j, s := range fw.IPs {
			ip, err := netip.ParseAddr(s)
			if err != nil || ip.Zone() != "" {
				add(fmt.Sprintf(".ips[%d]", j), "%q is not an IP address", s)
				continue
			}
			ip = ip.Unmap()
			if o, dup := owner[ip]; dup {
				add(fmt.Sprintf(".ips[%d]", j), "%s already belongs to %s", ip, o)
				continue
			}
			owner[ip] = key
			w.IPs = append(w.IPs, ip)
		}
		slices.SortFunc(w.IPs, func(a, b netip.Addr) int { return a.Compare(b) })
		for k, v := range fw.Labels {
			if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
				add(".labels", "key %q: %s", k, strings.Join(msgs, "; "))
			}
			if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
				add(".labels", "value %q of %q: %s", v, k, strings.Join(msgs, "; "))
			}
		}
		if len(fw.Labels) > 0 {
			w.Labels = fw.Labels
		}
		ports := make(map[uint16]bool)
		for j, fp := range fw.Ports {
			pp := fmt.Sprintf(".ports[%d]", j)
			if fp.Port < 1 || fp.Port > 65535 {
				add(pp+".port", "%d is not a port (1-65535)", fp.Port)
				continue
			}
			proto := fp.Protocol
			if proto == "" {
				proto = v1alpha1.ProtocolTCP
			}
			if !v1alpha1.IsKnownProtocol(proto) {
				add(pp+".protocol", "unknown protocol %q (want one of %s)", fp.Protocol, strings.Join(v1alpha1.KnownProtocols, ", "))
				continue
			}
			if ports[uint16(fp.Port)] {
				add(pp+".port", "%d declared twice", fp.Port)
				continue
			}
			ports[uint16(fp.Port)] = true
			w.Ports = append(w.Ports, Port{Port: uint16(fp.Port), Protocol: proto})
		}
		slices.SortFunc(w.Ports, func(a, b Port) int { return int(a.Port) - int(b.Port) })
		t.workloads = append(t.workloads, w)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid workloads: %w", errors.Join(errs...))
	}
	slices.SortFunc(t.workloads, func(a, b Workload) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for i, w := range t.workloads {
		for _, ip := range w.IPs {
			t.byIP[ip] = i
		}
	}
	return t, nil
}
