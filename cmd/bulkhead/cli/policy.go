package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

func policyCommand(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "policy",
		Aliases: []string{"policies", "segmentpolicy"},
		Short:   "Export, apply, diff and show SegmentPolicies",
	}
	cmd.AddCommand(policyExportCommand(g), policyApplyCommand(g), policyDiffCommand(g), policyGetCommand(g))
	return cmd
}

func policyExportCommand(g *Globals) *cobra.Command {
	var file string
	var all bool
	cmd := &cobra.Command{
		Use:   "export [-f FILE]",
		Short: "Write the namespace's policies as YAML, kubectl-apply-able",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Policies()
			if err != nil {
				return err
			}
			ns := g.Namespace
			if all {
				ns = ""
			}
			b, err := c.Export(cmd.Context(), ns)
			if err != nil {
				return err
			}
			if file == "" || file == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := os.WriteFile(file, b, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "write to FILE instead of stdout")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "policies of every namespace")
	return cmd
}

// readPolicyFile reads FILE, or stdin for "-", bounded by MaxPolicyFile.
func readPolicyFile(cmd *cobra.Command, file string) ([]byte, error) {
	if file == "" {
		return nil, errors.New("-f FILE is required (- for stdin)")
	}
	var r io.Reader = cmd.InOrStdin()
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, v1alpha1.MaxPolicyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if len(b) > v1alpha1.MaxPolicyFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, v1alpha1.MaxPolicyFile)
	}
	return b, nil
}

func policyApplyCommand(g *Globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|-",
		Short: "Apply the policies of a YAML file: all of them or, on any error, none",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := readPolicyFile(cmd, file)
			if err != nil {
				return err
			}
			c, err := g.Policies()
			if err != nil {
				return err
			}
			res, err := c.Apply(cmd.Context(), b)
			if err != nil {
				return err
			}
			type line struct{ name, state string }
			var lines []line
			for _, n := range res.Changed {
				lines = append(lines, line{n, "configured"})
			}
			for _, n := range res.Unchanged {
				lines = append(lines, line{n, "unchanged"})
			}
			slices.SortStableFunc(lines, func(a, b line) int { return strings.Compare(a.name, b.name) })
			for _, l := range lines {
				fmt.Fprintf(cmd.OutOrStdout(), "segmentpolicy %s %s\n", l.name, l.state)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "YAML file of SegmentPolicies (- for stdin)")
	return cmd
}

func policyDiffCommand(g *Globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "diff -f FILE|-",
		Short: "Show how the policies of a file differ from the live ones (exit status 1 when they do)",
		Long: `Compares each policy of FILE, in export form, with the live policy of the
same namespace and name (absent ones show as added). Prints a unified diff;
the exit status is 0 when they are equal, 1 when they differ, 2 on error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := readPolicyFile(cmd, file)
			if err != nil {
				return diffError(err)
			}
			c, err := g.Policies()
			if err != nil {
				return diffError(err)
			}
			live, err := c.Export(cmd.Context(), "")
			if err != nil {
				return diffError(err)
			}
			d, err := DiffPolicies(live, b, "live", displayName(file))
			if err != nil {
				return diffError(err)
			}
			if d == "" {
				return nil
			}
			fmt.Fprint(cmd.OutOrStdout(), d)
			return ExitCode(1)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "YAML file of SegmentPolicies (- for stdin)")
	return cmd
}

// diffError prints err and exits 2, as diff(1) does on trouble.
func diffError(err error) error { return &codedError{err, 2} }

type codedError struct {
	err  error
	code int
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func displayName(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}

// DiffPolicies returns a unified diff from the live export to the file's
// policies, both in export form (UnmarshalYAML then MarshalYAML), keeping
// of the live policies only those the file names; "" when equal.
func DiffPolicies(liveYAML, fileYAML []byte, liveName, fileName string) (string, error) {
	want, err := v1alpha1.UnmarshalYAML(fileYAML)
	if err != nil {
		return "", fmt.Errorf("%s: %w", fileName, err)
	}
	have, err := v1alpha1.UnmarshalYAML(liveYAML)
	if err != nil {
		return "", fmt.Errorf("live export: %w", err)
	}
	names := map[string]bool{}
	for _, p := range want {
		k := p.Namespace + "/" + p.Name
		if names[k] {
			return "", fmt.Errorf("%s: policy %s appears twice", fileName, k)
		}
		names[k] = true
	}
	have = slices.DeleteFunc(have, func(p *v1alpha1.SegmentPolicy) bool { return !names[p.Namespace+"/"+p.Name] })
	a, err := v1alpha1.MarshalYAML(have)
	if err != nil {
		return "", err
	}
	b, err := v1alpha1.MarshalYAML(want)
	if err != nil {
		return "", err
	}
	return UnifiedDiff(liveName, fileName, string(a), string(b), 3), nil
}

func policyGetCommand(g *Globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "Show policies with their status: per-rule hits and last hit",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Policies()
			if err != nil {
				return err
			}
			ps, err := c.Policies(cmd.Context())
			if err != nil {
				return err
			}
			var ns, name string
			if len(args) == 1 {
				if ns, name, err = segmentArg(args[0], g.Namespace); err != nil {
					return err
				}
			}
			var out []v1alpha1.SegmentPolicy
			for _, p := range ps {
				switch {
				case name != "" && (p.Namespace != ns || p.Name != name):
				case name == "" && !all && p.Namespace != g.Namespace:
				default:
					p.TypeMeta = v1alpha1.TypeMetaSegmentPolicy()
					out = append(out, p)
				}
			}
			w := cmd.OutOrStdout()
			if name != "" {
				if len(out) == 0 {
					return fmt.Errorf("segmentpolicy %s/%s not found", ns, name)
				}
				if g.Output != "table" {
					return printObject(w, g.Output, out[0], nil)
				}
			} else if g.Output != "table" {
				return printObject(w, g.Output, out, nil)
			}
			// The mode in force when the policy leaves it to the defaults.
			effective := map[string]string{}
			if segs, err := c.Segments(cmd.Context()); err == nil {
				for _, s := range segs {
					effective[s.Key()] = string(s.Mode)
				}
			}
			var t table
			policyRows(&t, out, all, effective)
			if err := t.write(w); err != nil || len(out) == 0 {
				return err
			}
			fmt.Fprintln(w)
			var r table
			ruleRows(&r, out, all, len(out) > 1)
			return r.write(w)
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "policies of every namespace")
	return cmd
}

// policyRows lists policies; a mode left to the defaults shows the
// effective one from effective ("ns/name" → mode), with "(default)".
func policyRows(t *table, ps []v1alpha1.SegmentPolicy, withNS bool, effective map[string]string) {
	t.header(withNS, "NAMESPACE", "NAME", "MODE", "INGRESS", "EGRESS", "LEARNED", "VIOLATIONS")
	for _, p := range ps {
		learned := 0
		for _, r := range slices.Concat(p.Spec.Ingress, p.Spec.Egress) {
			if r.Origin == v1alpha1.OriginLearned {
				learned++
			}
		}
		mode := string(p.Spec.Mode)
		if m := effective[p.Namespace+"/"+p.Name]; mode == "" && m != "" {
			mode = m + " (default)"
		}
		t.row(withNS, p.Namespace, p.Name, mode, len(p.Spec.Ingress), len(p.Spec.Egress), learned, p.Status.Violations)
	}
	t.empty = "No policies found."
}

// ruleRows lists every rule with its hits; POLICY (and NAMESPACE) columns
// when rules of several policies share the table.
func ruleRows(t *table, ps []v1alpha1.SegmentPolicy, withNS, withPolicy bool) {
	cols := []string{"NAMESPACE", "POLICY", "RULE", "DIRECTION", "ORIGIN", "PEERS", "PORTS", "L7", "HITS", "LAST HIT"}
	drop := func(r []string) []string {
		if !withPolicy {
			return r[2:]
		}
		if !withNS {
			return r[1:]
		}
		return r
	}
	t.rows = append(t.rows, drop(cols))
	for _, p := range ps {
		hits := map[string]v1alpha1.RuleStatus{}
		for _, s := range p.Status.Rules {
			hits[s.Name] = s
		}
		for _, dir := range []struct {
			name  string
			rules []v1alpha1.Rule
		}{{"ingress", p.Spec.Ingress}, {"egress", p.Spec.Egress}} {
			for _, r := range dir.rules {
				s := hits[r.Name]
				last := "-"
				if s.LastHit != nil {
					last = age(s.LastHit.Time)
				}
				row := []string{p.Namespace, p.Name, r.Name, dir.name, cell(string(r.Origin)), peers(p.Namespace, r.Peers), ports(r.Ports), l7(r), fmt.Sprint(s.Hits), last}
				t.rows = append(t.rows, drop(row))
			}
		}
	}
	t.empty = "No rules."
}

func peers(ns string, ps []v1alpha1.Peer) string {
	if len(ps) == 0 {
		return "any"
	}
	s := make([]string, 0, len(ps))
	for _, p := range ps {
		switch {
		case p.CIDR != "":
			s = append(s, p.CIDR)
		case p.FQDN != "":
			s = append(s, p.FQDN)
		case p.Segment != "" && (p.Namespace == "" || p.Namespace == ns):
			s = append(s, p.Segment)
		case p.Segment != "":
			s = append(s, p.Namespace+"/"+p.Segment)
		default:
			s = append(s, p.Namespace+"/*")
		}
	}
	return strings.Join(s, ",")
}

func ports(ps []v1alpha1.PortProtocol) string {
	s := make([]string, 0, len(ps))
	for _, p := range ps {
		s = append(s, fmt.Sprintf("%d/%s", p.Port, p.EffectiveProtocol()))
	}
	return list(s)
}

func l7(r v1alpha1.Rule) string {
	if r.Redis != nil {
		return "redis: " + strings.Join(r.Redis.Commands, ",")
	}
	return "-"
}
