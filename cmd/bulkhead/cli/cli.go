// Package cli is the bulkhead command line: a client of the control plane's
// admin API (docs/contracts.md) and the cobra commands built on it, after
// kubectl's conventions: -n/--namespace, -A/--all-namespaces,
// -o table|yaml|json, -f FILE.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Streams are the command's standard input, output and error.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Globals are the flags every command shares.
type Globals struct {
	Server    string // control plane admin URL
	Namespace string
	Output    string    // table, yaml or json
	Auth      Auth      // how the client authenticates (auth.go)
	Kube      KubeFlags // cluster mode of mode and policy commands (kube.go)
}

// Client returns a client of the admin API at g.Server, with the token
// g.Auth finds.
func (g *Globals) Client() (*Client, error) {
	c, err := NewClient(g.Server, nil)
	if err != nil {
		return nil, err
	}
	tok, err := g.Auth.Token()
	if err != nil {
		return nil, err
	}
	if tok == "" && g.Kube.on() {
		if tok, err = kubeToken(&g.Kube); err != nil {
			return nil, err
		}
	}
	return c.WithToken(tok), nil
}

// ExitCode is an error that only sets the process's exit status (like
// diff's 1 for "different"); Execute prints nothing for it.
type ExitCode int

func (e ExitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Extra builds a command that needs more than the admin API (e.g. demo);
// it may read the globals when it runs.
type Extra func(g *Globals) *cobra.Command

// NewCommand returns the root command with every subcommand, plus extra.
func NewCommand(s Streams, extra ...Extra) *cobra.Command {
	g := &Globals{}
	root := &cobra.Command{
		Use:           "bulkhead",
		Short:         "Operate Bulkhead, the Layer-7 micro-segmentation firewall",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch g.Output {
			case "table", "yaml", "json":
				return nil
			}
			return fmt.Errorf("--output %q: want table, yaml or json", g.Output)
		},
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	server := os.Getenv("BULKHEAD_SERVER")
	if server == "" {
		server = DefaultServer
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.Server, "server", server, "control plane admin URL (env BULKHEAD_SERVER)")
	pf.StringVarP(&g.Namespace, "namespace", "n", "default", "namespace")
	pf.StringVarP(&g.Output, "output", "o", "table", "output format: table, yaml or json")
	g.Auth.flags(pf)
	g.Kube.flags(pf)

	root.AddCommand(modeCommand(g), policyCommand(g), flowsCommand(g, false), flowsCommand(g, true), proxiesCommand(g))
	root.AddCommand(operatorCommands(g)...) // operator.go
	root.AddCommand(promotionCommands(g)...)
	root.AddCommand(mapCommand(g)) // svcmap.go
	for _, e := range extra {
		root.AddCommand(e(g))
	}
	return root
}

// Execute runs the command line args and returns the exit status: 0, the
// ExitCode a command returned, or 1 after printing the error.
func Execute(ctx context.Context, args []string, s Streams, extra ...Extra) int {
	root := NewCommand(s, extra...)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var code ExitCode
	var coded *codedError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &coded):
		fmt.Fprintf(s.Err, "error: %v\n", err)
		return coded.code
	}
	fmt.Fprintf(s.Err, "error: %v\n", err)
	return 1
}

// segmentArg splits "name" (in the default namespace) or "namespace/name".
func segmentArg(arg, namespace string) (string, string, error) {
	ns, name := namespace, arg
	if i := strings.IndexByte(arg, '/'); i >= 0 {
		ns, name = arg[:i], arg[i+1:]
	}
	if err := checkName("namespace", ns); err != nil {
		return "", "", err
	}
	if err := checkName("segment", name); err != nil {
		return "", "", err
	}
	return ns, name, nil
}
