// Command bulkhead-proxy is Bulkhead's transparent sidecar proxy. "run" (the
// default) enforces the workload's policy on inbound traffic (and, with
// --outbound, on its outbound TCP and DNS); "init" installs the redirect of
// inbound TCP (with --outbound, of outbound TCP and UDP/53 too) to the proxy
// and "cleanup" removes it.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bulkhead-io/bulkhead/dataplane/agent"
	"github.com/bulkhead-io/bulkhead/dataplane/capture"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bulkhead-proxy:", err)
		stop()
		os.Exit(1)
	}
}

func root() *cobra.Command {
	var (
		cfg      agent.Config
		logLevel string
	)
	runE := func(cmd *cobra.Command, _ []string) error {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
			return fmt.Errorf("--log-level: %w", err)
		}
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
		if cfg.Outbound.Unmarked && !cmd.Flags().Changed("mark") {
			cfg.Outbound.Mark = 0
		}
		return agent.Run(cmd.Context(), cfg)
	}
	run := &cobra.Command{Use: "run", Short: "Run the proxy (the default)", Args: cobra.NoArgs, RunE: runE}
	root := &cobra.Command{
		Use:           "bulkhead-proxy",
		Short:         "Bulkhead's transparent L7 firewall sidecar",
		Args:          cobra.NoArgs,
		RunE:          runE,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	for _, c := range []*cobra.Command{root, run} {
		f := c.Flags()
		f.StringVar(&cfg.Node, "node", "", "xDS node id: workload.namespace")
		f.StringVar(&cfg.XDSAddr, "xds-addr", agent.DefaultXDSAddr, "control plane gRPC address (ADS and flow reports)")
		f.StringVar(&cfg.InboundAddr, "inbound-addr", agent.DefaultInboundAddr, "inbound listener (the redirect target)")
		f.StringVar(&cfg.AdminAddr, "admin-addr", agent.DefaultAdminAddr, "admin listener: /metrics, /healthz, /readyz, /debug/policy")
		f.StringVar(&cfg.CacheDir, "cache-dir", agent.DefaultCacheDir, `directory of the last good configuration ("-": none)`)
		f.DurationVar(&cfg.ReportInterval, "report-interval", agent.DefaultReportInterval, "how often flows are reported")
		f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
		f.IntVar(&cfg.Limits.MaxConns, "max-conns", 0, "most connections proxied at once (0: the proxy's default, 8192)")
		limitFlags(c, &cfg.Limits)
		f.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof/ on the admin address")
		trustFlags(c, &cfg.Trust) // trust.go
		f.BoolVar(&cfg.Outbound.Enabled, "outbound", false, "also proxy outbound TCP and DNS (the targets of init --outbound)")
		f.StringVar(&cfg.Outbound.Addr, "outbound-addr", agent.DefaultOutboundAddr, "outbound listener")
		f.StringSliceVar(&cfg.Outbound.DNSAddrs, "dns-addrs", nil, "DNS proxy sockets (default 127.0.0.1:15053 and [::1]:15053)")
		f.StringVar(&cfg.Outbound.DNSUpstream, "dns-upstream", "", "nameserver DNS queries go to (default: the first of /etc/resolv.conf)")
		f.Uint32Var(&cfg.Outbound.Mark, "mark", capture.DefaultMark, "SO_MARK of the proxy's own sockets (as init --mark; needs CAP_NET_ADMIN)")
		f.BoolVar(&cfg.Outbound.Unmarked, "outbound-unmarked", false, "no mark (--mark defaults to 0): init --exclude-uid leaves the proxy's user alone")
		f.DurationVar(&cfg.Outbound.Names.MinTTL, "dns-min-ttl", enforce.DefaultMinNameTTL, "least time a name learned from a DNS answer covers its addresses")
	}

	cleanup := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove the redirect installed by init",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return capture.Remove(cmd.Context()) },
	}
	root.AddCommand(run, initCmd(), cleanup, certCmd()) // initCmd: init.go, certCmd: trust.go
	return root
}

// ports converts a port list flag.
func ports(flag string, in []uint) ([]uint16, error) {
	out := make([]uint16, 0, len(in))
	for _, p := range in {
		if p == 0 || p > 65535 {
			return nil, fmt.Errorf("%s: %d is not a port", flag, p)
		}
		out = append(out, uint16(p))
	}
	return out, nil
}
