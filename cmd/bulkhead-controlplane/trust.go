package main

import (
	"flag"
	"strings"

	"github.com/bulkhead-io/bulkhead/controlplane/ca"
	"github.com/bulkhead-io/bulkhead/controlplane/run"
)

// trustFlags declares the flags of mutual TLS on the gRPC port
// (docs/operations.md, "Trust").
func trustFlags(fs *flag.FlagSet, t *run.TrustConfig) {
	fs.BoolVar(&t.Insecure, "insecure", false, "serve gRPC in plaintext without authentication (node ids self-declared; benchmarks and old setups only)")
	fs.StringVar(&t.CACert, "ca-cert", "", "the operator's CA certificate (PEM, e.g. cert-manager's tls.crt); default: <state>/ca.crt, created")
	fs.StringVar(&t.CAKey, "ca-key", "", "the operator's CA key (PEM, e.g. cert-manager's tls.key), with --ca-cert")
	fs.StringVar(&t.TrustDomain, "trust-domain", ca.DefaultTrustDomain, "SPIFFE trust domain of workload certificates")
	fs.DurationVar(&t.CertTTL, "cert-ttl", ca.DefaultTTL, "lifetime of workload certificates (proxies renew at two thirds)")
	fs.StringVar(&t.TokensFile, "tokens-file", "", "YAML mapping bootstrap tokens to the node ids they may get certificates for (default: <state>/bootstrap-token, any node)")
	fs.Func("server-names", "extra DNS names or IPs of the serving certificate, comma-separated", func(v string) error {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				t.ServerNames = append(t.ServerNames, n)
			}
		}
		return nil
	})
}
