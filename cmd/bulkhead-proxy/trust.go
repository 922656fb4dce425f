package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/bulkhead-io/bulkhead/dataplane/agent"
)

// trustFlags declares the flags of mutual TLS with the control plane
// (docs/operations.md, "Trust").
func trustFlags(c *cobra.Command, t *agent.Trust) {
	f := c.Flags()
	f.StringVar(&t.CAFile, "ca-file", "", "PEM bundle the control plane's certificate must chain to (its <state>/ca.crt); required unless --insecure")
	f.StringVar(&t.TokenFile, "token-file", "", "credential for certificate requests: the bootstrap token, or the pod's service-account token; required unless --insecure")
	f.StringVar(&t.ServerName, "server-name", "", "name checked in the control plane's certificate (default: the host of --xds-addr)")
	f.BoolVar(&t.Insecure, "insecure", false, "talk to the control plane in plaintext without a certificate (benchmarks and old setups only)")
}

// certCmd is `bulkhead-proxy cert`: the certificate of a node kept in a
// folder for a sidecar that reads files (Envoy, proxyless gRPC).
func certCmd() *cobra.Command {
	var cfg agent.CertConfig
	c := &cobra.Command{
		Use:   "cert",
		Short: "Keep a node's certificate (tls.crt, tls.key, ca.crt) in a folder, renewed, for Envoy or proxyless gRPC",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
			return agent.WriteCertificates(cmd.Context(), cfg)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Node, "node", "", "xDS node id: workload.namespace")
	f.StringVar(&cfg.XDSAddr, "xds-addr", agent.DefaultXDSAddr, "control plane gRPC address")
	f.StringVar(&cfg.Dir, "dir", "/var/run/bulkhead/certs", "folder of tls.crt, tls.key and ca.crt")
	f.StringVar(&cfg.Trust.CAFile, "ca-file", "", "PEM bundle the control plane's certificate must chain to")
	f.StringVar(&cfg.Trust.TokenFile, "token-file", "", "credential for certificate requests")
	f.StringVar(&cfg.Trust.ServerName, "server-name", "", "name checked in the control plane's certificate (default: the host of --xds-addr)")
	return c
}
