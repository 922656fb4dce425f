// Command bulkhead is Bulkhead's command line: modes, policies, flows,
// violations and proxies through the control plane's admin API, and
// `bulkhead demo`, the whole story on one machine.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/test/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := cli.Execute(ctx, os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, demoCommand)
	stop()
	os.Exit(code)
}

func demoCommand(*cli.Globals) *cobra.Command {
	var o demo.Options
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Tell the whole story on this machine (root): discover, protect, monitor",
		Long: `Builds network namespaces for web, cart, redis and intruder, runs a real
redis-server behind bulkhead-proxy and the control plane on this machine,
learns the rules from real redis-cli traffic, then protects and monitors.
Everything it makes is removed at the end, on failure and on Ctrl-C. Needs
root, iproute2, iptables, redis-server and redis-cli.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.BinDir == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find the binaries: %w (use --bin)", err)
				}
				o.BinDir = filepath.Dir(exe)
			}
			o.Out = cmd.OutOrStdout()
			// A reader that goes away (| head) must not kill the demo
			// before it has removed what it made: writes fail instead.
			signal.Ignore(syscall.SIGPIPE)
			return demo.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.BinDir, "bin", "", "directory of bulkhead, bulkhead-controlplane and bulkhead-proxy (default: this binary's)")
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "keep the temp dir (control plane state, process logs) and print where it is")
	cmd.Flags().BoolVarP(&o.Verbose, "verbose", "v", false, "print what the lab does and the processes' logs on failure")
	return cmd
}
