package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

func modeCommand(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mode",
		Short: "Show or set how segments are judged: discover, monitor or protect",
	}
	cmd.AddCommand(modeGetCommand(g), modeSetCommand(g))
	return cmd
}

func modeGetCommand(g *Globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "get [SEGMENT]",
		Short: "Show the mode of the namespace's segments, or of one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Policies()
			if err != nil {
				return err
			}
			segs, err := c.Segments(cmd.Context())
			if err != nil {
				return err
			}
			var ns, name string
			if len(args) == 1 {
				if ns, name, err = segmentArg(args[0], g.Namespace); err != nil {
					return err
				}
			}
			var out []Segment
			for _, s := range segs {
				switch {
				case name != "" && (s.Namespace != ns || s.Name != name):
				case name == "" && !all && s.Namespace != g.Namespace:
				default:
					out = append(out, s)
				}
			}
			if name != "" {
				if len(out) == 0 {
					return fmt.Errorf("segment %s/%s not found", ns, name)
				}
				return printObject(cmd.OutOrStdout(), g.Output, out[0], func(t *table) { segmentRows(t, out, false) })
			}
			return printObject(cmd.OutOrStdout(), g.Output, out, func(t *table) { segmentRows(t, out, all) })
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "segments of every namespace")
	return cmd
}

func segmentRows(t *table, segs []Segment, withNS bool) {
	t.header(withNS, "NAMESPACE", "NAME", "MODE", "WORKLOADS", "RULES", "LEARNED", "VIOLATIONS")
	for _, s := range segs {
		t.row(withNS, s.Namespace, s.Name, string(s.Mode), list(s.Workloads), s.Rules, s.Learned, s.Violations)
	}
	if len(segs) == 0 {
		t.empty = "No segments found."
	}
}

func modeSetCommand(g *Globals) *cobra.Command {
	var nsDefault string
	cmd := &cobra.Command{
		Use:   "set (SEGMENT MODE | --namespace-default MODE)",
		Short: "Set the mode of a segment, or the default of the namespace's segments",
		Example: `  bulkhead mode set redis protect -n demo
  bulkhead mode set --namespace-default monitor -n demo`,
		Args: func(cmd *cobra.Command, args []string) error {
			if nsDefault != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Policies()
			if err != nil {
				return err
			}
			if nsDefault != "" {
				m, err := parseMode(nsDefault)
				if err != nil {
					return err
				}
				if err := c.SetNamespaceMode(cmd.Context(), g.Namespace, m); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "namespace %s: default mode %s\n", g.Namespace, m)
				return nil
			}
			ns, name, err := segmentArg(args[0], g.Namespace)
			if err != nil {
				return err
			}
			m, err := parseMode(args[1])
			if err != nil {
				return err
			}
			if err := c.SetMode(cmd.Context(), ns, name, m); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "segment %s/%s: mode %s\n", ns, name, m)
			return nil
		},
	}
	cmd.Flags().StringVar(&nsDefault, "namespace-default", "", "set the namespace's default mode instead of a segment's")
	return cmd
}

func parseMode(s string) (v1alpha1.Mode, error) {
	switch m := v1alpha1.Mode(s); m {
	case v1alpha1.ModeDiscover, v1alpha1.ModeMonitor, v1alpha1.ModeProtect:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want discover, monitor or protect", s)
}
