package run

import (
	"cmp"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/als"
	"github.com/bulkhead-io/bulkhead/controlplane/compile"
	"github.com/bulkhead-io/bulkhead/controlplane/envoy"
	"github.com/bulkhead-io/bulkhead/controlplane/identity"
)

// serveEnvoy compiles the Envoy resources of the workloads with a sidecar
// and publishes them, and refreshes the view of the access log service. A
// failure keeps every node's last good configuration; it is logged and
// counted (bulkhead_compile_runs_total{result="envoy_error"}) but does not
// fail the compilation bulkhead-proxy's configuration came from.
func (c *compiler) serveEnvoy(out *compile.Output, workloads []identity.Workload) {
	c.view.Store(als.NewView(out))
	start := time.Now()
	res, err := c.envoy.Compile(envoy.Input{Output: out, Workloads: workloads})
	if err == nil {
		err = c.xds.SetEnvoy(res.Nodes)
	}
	if err != nil {
		c.metrics.runs.WithLabelValues("envoy_error").Inc()
		c.log.Error("envoy configuration not (fully) published; nodes keep their last good one", "error", err)
		return
	}
	if len(res.Changed) > 0 {
		c.log.Debug("envoy configuration published", "nodes", len(res.Nodes), "changed", len(res.Changed),
			"built", res.Built, "took", time.Since(start))
	}
}

// withBootstrap serves GET /v1/envoy/bootstrap next to the admin API:
//
//	GET /v1/envoy/bootstrap?node=api.demo[&kind=envoy|grpc][&xds=host:port][&sotw=true]
//
// It answers the bootstrap of the node as JSON: Envoy's (envoy.Bootstrap)
// or a proxyless gRPC application's file for GRPC_XDS_BOOTSTRAP
// (envoy.GRPCBootstrap). kind defaults to the workload's sidecar field;
// xds, the control plane address the sidecar dials, to the gRPC server's
// listening address (required when that is an unspecified address).
func withBootstrap(next http.Handler, c *compiler, grpcAddr func() net.Addr) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("/v1/envoy/bootstrap", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		q := r.URL.Query()
		node := q.Get("node")
		kind := q.Get("kind")
		if kind == "" {
			kind = identity.SidecarEnvoy
			if ws := c.workloads.Load(); ws != nil {
				for _, wl := range *ws {
					if identity.NodeID(wl) == node && wl.Sidecar != "" {
						kind = wl.Sidecar
					}
				}
			}
		}
		xdsAddr := q.Get("xds")
		if xdsAddr == "" {
			ap, err := netip.ParseAddrPort(grpcAddr().String())
			if err != nil || ap.Addr().IsUnspecified() {
				writeError(w, http.StatusBadRequest, "the gRPC server listens on an unspecified address: give xds=host:port")
				return
			}
			xdsAddr = ap.String()
		}
		o := envoy.BootstrapOptions{Node: node, ControlPlane: xdsAddr, StateOfTheWorld: q.Get("sotw") == "true"}
		if c.trust != nil && c.trust.ca != nil { // mutual TLS: the sidecar's certificate folder (trust.go)
			o.TLS = &envoy.BootstrapTLS{Dir: cmp.Or(q.Get("certs"), envoy.DefaultCertDir)}
		}
		var body []byte
		var err error
		switch kind {
		case identity.SidecarEnvoy:
			b, berr := envoy.Bootstrap(o)
			if berr == nil {
				body, err = envoy.MarshalJSON(b)
			} else {
				err = berr
			}
		case identity.SidecarGRPC:
			body, err = envoy.GRPCBootstrap(o)
		default:
			writeError(w, http.StatusBadRequest, "kind must be envoy or grpc")
			return
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	return mux
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
