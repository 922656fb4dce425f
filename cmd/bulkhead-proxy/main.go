// Command bulkhead-proxy is Bulkhead's transparent sidecar proxy. "run" (the
// default) enforces the workload's policy on inbound traffic; "init" installs
// the redirect of inbound TCP to the proxy and "cleanup" removes it.
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
	}

	var ic capture.Config
	var proxyPort uint16
	var exclude []uint
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Redirect inbound TCP to the proxy (iptables; needs NET_ADMIN)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ic.ProxyPort = proxyPort
			for _, p := range exclude {
				if p == 0 || p > 65535 {
					return fmt.Errorf("--exclude-ports: %d is not a port", p)
				}
				ic.ExcludePorts = append(ic.ExcludePorts, uint16(p))
			}
			return capture.Install(cmd.Context(), ic)
		},
	}
	initCmd.Flags().Uint16Var(&proxyPort, "proxy-port", 15006, "the proxy's inbound port")
	initCmd.Flags().UintSliceVar(&exclude, "exclude-ports", []uint{15090}, "inbound ports not redirected (keep the admin port in the list)")
	cleanup := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove the redirect installed by init",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return capture.Remove(cmd.Context()) },
	}
	root.AddCommand(run, initCmd, cleanup)
	return root
}
