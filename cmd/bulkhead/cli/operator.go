package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bulkhead-io/bulkhead/controlplane/admin"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/explain"
	"github.com/bulkhead-io/bulkhead/controlplane/history"
)

// operatorCommands are history, explain, replay and drift.
func operatorCommands(g *Globals) []*cobra.Command {
	return []*cobra.Command{historyCommand(g), explainCommand(g), replayCommand(g), driftCommand(g)}
}

// HistoryQuery selects records of GET /v1/history.
type HistoryQuery struct {
	Segment    string
	Since      string // a duration: "24h"
	Violations bool
	Aggregate  bool
	Limit      int
}

// History returns records of the flow history.
func (c *Client) History(ctx context.Context, q HistoryQuery) ([]history.Record, error) {
	v := url.Values{}
	if q.Segment != "" {
		v.Set("segment", q.Segment)
	}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Violations {
		v.Set("violations", "true")
	}
	if q.Aggregate {
		v.Set("aggregate", "true")
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	var out []history.Record
	return out, c.getJSON(ctx, "/v1/history", v, &out)
}

// Explain asks the control plane to explain a flow or a recorded flow.
func (c *Client) Explain(ctx context.Context, req admin.ExplainRequest) (admin.ExplainResult, error) {
	var out admin.ExplainResult
	b, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	return out, c.postJSON(ctx, "/v1/explain", nil, "application/json", b, &out)
}

// Replay evaluates the recorded flows against a draft (policy YAML).
func (c *Client) Replay(ctx context.Context, draft []byte, since string) (*explain.ReplayReport, error) {
	var out explain.ReplayReport
	return &out, c.postJSON(ctx, "/v1/replay", sinceValues(since), "text/yaml", draft, &out)
}

// Drift compares policy YAML (a folder's) with the live policy and flows.
func (c *Client) Drift(ctx context.Context, policies []byte, since string) (*explain.DriftReport, error) {
	var out explain.DriftReport
	return &out, c.postJSON(ctx, "/v1/drift", sinceValues(since), "text/yaml", policies, &out)
}

func sinceValues(since string) url.Values {
	v := url.Values{}
	if since != "" {
		v.Set("since", since)
	}
	return v
}

func (c *Client) postJSON(ctx context.Context, path string, q url.Values, ct string, body []byte, out any) error {
	b, err := c.do(ctx, http.MethodPost, path, q, ct, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

func historyCommand(g *Globals) *cobra.Command {
	var q HistoryQuery
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Show the recorded flow history (with the ids explain --id takes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			recs, err := c.History(cmd.Context(), q)
			if err != nil {
				return err
			}
			return printObject(cmd.OutOrStdout(), g.Output, recs, func(t *table) {
				t.header(true, "ID", "SEGMENT", "MODE", "VERDICT", "SOURCE", "DESTINATION", "L7", "RULE/REASON", "COUNT")
				for _, r := range recs {
					t.row(true, r.ID, r.Segment, r.Mode, r.Verdict, opEndpoint(r.SrcSegment, r.SrcIP),
						fmt.Sprintf("%s:%d/%s", opEndpoint(r.DstSegment, r.DstIP), r.DstPort, r.Protocol),
						l7Text(r.Verb, r.Sub, r.Resource, r.Aux, r.MoreResources), ruleOrReason(r.Rule, r.Reason), r.Count)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.Segment, "segment", "", "only flows of this segment (ns/name) or namespace")
	f.StringVar(&q.Since, "since", "", "only flows seen within this duration (e.g. 24h)")
	f.BoolVar(&q.Violations, "violations", false, "only violations and denials")
	f.BoolVar(&q.Aggregate, "aggregate", false, "one record per flow over the whole period")
	f.IntVar(&q.Limit, "limit", 100, "at most this many records (0: all)")
	return cmd
}

func opEndpoint(seg, ip string) string {
	if seg == "" {
		return ip
	}
	return seg
}

func ruleOrReason(rule, reason string) string {
	if rule != "" {
		return rule
	}
	return reason
}

func l7Text(verb, sub, res, aux string, more []string) string {
	s := strings.TrimSpace(verb + " " + sub)
	if rs := append([]string{res}, more...); res != "" {
		s += " " + strings.Join(rs, ",")
	}
	if aux != "" {
		s += " (" + aux + ")"
	}
	return strings.TrimSpace(s)
}

func explainCommand(g *Globals) *cobra.Command {
	var fl explain.Flow
	var from, to, id string
	var egress bool
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Explain the decision on a flow: the rule that matched, or the rules that nearly did and where they differ",
		Example: `  bulkhead explain --from demo/cart --to demo/api --port 8080 --protocol http --verb GET --resource /users/1
  bulkhead explain --from 198.18.0.10 --to demo/redis --port 6379 --protocol redis --verb CONFIG --sub SET
  bulkhead explain --id 3f2a9c0d1e5b7a64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req admin.ExplainRequest
			if id != "" {
				req.ID = id
			} else {
				if to == "" || fl.Port == 0 {
					return errors.New("give --to and --port (or --id)")
				}
				fl.SrcIP, fl.SrcSegment = peerArg(from, g.Namespace)
				fl.DstIP, fl.DstSegment = peerArg(to, g.Namespace)
				if egress {
					fl.Direction = "egress"
				}
				req.Flow = &fl
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			res, err := c.Explain(cmd.Context(), req)
			if err != nil {
				return err
			}
			if g.Output != "table" {
				return printObject(cmd.OutOrStdout(), g.Output, res, nil)
			}
			return printExplanation(cmd.OutOrStdout(), &res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "source: an IP or a segment (name or ns/name)")
	f.StringVar(&to, "to", "", "destination: an IP or a segment (name or ns/name)")
	f.Uint32Var(&fl.Port, "port", 0, "destination port")
	f.StringVar(&fl.Protocol, "protocol", "", "protocol (http, redis, …)")
	f.StringVar(&fl.Verb, "verb", "", "L7 verb (GET, SELECT, CONFIG, …)")
	f.StringVar(&fl.Sub, "sub", "", "L7 sub-command (Redis)")
	f.StringVar(&fl.Resource, "resource", "", "L7 resource (path, table, topic, name, …)")
	f.StringVar(&fl.Aux, "aux", "", "L7 aux field (host, database, client id, …)")
	f.StringSliceVar(&fl.More, "more", nil, "further resources of the message")
	f.BoolVar(&fl.Connection, "connection", false, "judge the connection (L4), not a message")
	f.BoolVar(&egress, "egress", false, "judge by the source's egress rules (default: the destination's ingress rules)")
	f.StringVar(&id, "id", "", "explain a recorded flow (ids from bulkhead history)")
	return cmd
}

// peerArg reads an IP or a segment ("name" in the namespace, or "ns/name").
func peerArg(s, ns string) (ip, segment string) {
	if s == "" {
		return "", ""
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return s, ""
	}
	if !strings.Contains(s, "/") {
		s = ns + "/" + s
	}
	return "", s
}

func printExplanation(w io.Writer, res *admin.ExplainResult) error {
	e := &res.Explanation
	f := e.Flow
	dir := "ingress"
	if f.Direction == "egress" {
		dir = "egress"
	}
	verdict := e.Verdict
	if e.Enforced {
		verdict += ", enforced"
	}
	fmt.Fprintf(w, "decision:  %s (mode %s of %s, %s)\n", verdict, e.Mode, orNone(e.Segment), dir)
	what := l7Text(f.Verb, f.Sub, f.Resource, f.Aux, f.More)
	if f.Connection {
		what = "connection"
	}
	fmt.Fprintf(w, "flow:      %s -> %s:%d/%s %s\n", opEndpoint(f.SrcSegment, f.SrcIP), opEndpoint(f.DstSegment, f.DstIP), f.Port, orNone(f.Protocol), what)
	if res.Record != nil {
		fmt.Fprintf(w, "recorded:  %s %s, rule %s, %d messages, last %s\n", res.Record.Verdict, res.Record.Mode,
			orNone(ruleOrReason(res.Record.Rule, res.Record.Reason)), res.Record.Count, res.Record.LastSeen.Format("2006-01-02T15:04:05Z07:00"))
	}
	if e.Rule != "" {
		fmt.Fprintf(w, "rule:      %s (origin %s)\n", e.Rule, orNone(e.RuleOrigin))
		return nil
	}
	why := map[string]string{explain.ReasonNoRule: "no rule admits this peer on this port", explain.ReasonL7: "rules admit the peer and port, but none allows this message"}[e.Reason]
	if !e.HasPolicy {
		why = "the segment has no policy"
	}
	fmt.Fprintf(w, "rule:      none (%s: %s)\n", e.Reason, why)
	for i, n := range e.Near {
		label := "nearest:"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(w, "%-10s %s (origin %s) differs on %s: %s\n", label, n.Rule, orNone(n.Origin), strings.Join(n.Differs, ", "), n.Detail)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// policyFiles reads a policy file or every *.yaml/*.yml/*.json file below
// a folder, and returns the policies as one YAML stream plus, per policy
// ("ns/name"), the file that holds it.
func policyFiles(path string) ([]byte, map[string]string, error) {
	files := map[string]string{}
	var all []*v1alpha1.SegmentPolicy
	read := func(p string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		ps, err := v1alpha1.UnmarshalYAML(b)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, pol := range ps {
			k := pol.Namespace + "/" + pol.Name
			if prev, dup := files[k]; dup {
				return fmt.Errorf("%s: policy %s is also in %s", p, k, prev)
			}
			files[k] = p
			all = append(all, pol)
		}
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.IsDir() {
		if err := read(path); err != nil {
			return nil, nil, err
		}
	} else {
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != path {
				return filepath.SkipDir // .git
			}
			switch filepath.Ext(p) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					return read(p)
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	body, err := v1alpha1.MarshalYAML(all)
	if err != nil {
		return nil, nil, err
	}
	return body, files, nil
}

func replayCommand(g *Globals) *cobra.Command {
	var policy, since string
	cmd := &cobra.Command{
		Use:   "replay --policy FILE|DIR",
		Short: "Evaluate the recorded flows against a draft policy (the live one is not touched) and report what it would deny",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if policy == "" {
				return errors.New("--policy FILE|DIR is required")
			}
			body, _, err := policyFiles(policy)
			if err != nil {
				return err
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			rep, err := c.Replay(cmd.Context(), body, since)
			if err != nil {
				return err
			}
			if g.Output != "table" {
				return printObject(cmd.OutOrStdout(), g.Output, rep, nil)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "draft %s: %d recorded flows of its segments evaluated, %d would be denied (%d messages)\n",
				strings.Join(rep.Policies, ", "), rep.Evaluated, rep.Denied, rep.Count)
			printGroups(w, rep.Groups)
			return nil
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "", "draft policy: a YAML file or a folder of them")
	cmd.Flags().StringVar(&since, "since", "", "only flows seen within this duration (default: the whole history)")
	return cmd
}

func printGroups(w io.Writer, groups []*explain.Group) {
	if len(groups) == 0 {
		return
	}
	t := &table{}
	t.header(true, "SEGMENT", "MODE", "WOULD BE", "RECORDED RULE", "FLOWS", "MESSAGES")
	for _, gr := range groups {
		t.row(true, gr.Segment, gr.Mode, gr.Verdict, orNone(ruleOrReason(gr.Rule, "(none: "+gr.RecordedReason+")")), gr.Flows, gr.Count)
	}
	t.write(w)
	for _, gr := range groups {
		for _, e := range gr.Examples {
			f := e.Flow
			fmt.Fprintf(w, "  %s  %s -> %s:%d/%s %s  x%d  (%s)\n", e.ID, opEndpoint(f.SrcSegment, f.SrcIP), opEndpoint(f.DstSegment, f.DstIP),
				f.Port, f.Protocol, l7Text(f.Verb, f.Sub, f.Resource, f.Aux, f.More), e.Count, e.Reason)
		}
	}
}

func driftCommand(g *Globals) *cobra.Command {
	var dir, since, format string
	var unusedIsDrift bool
	cmd := &cobra.Command{
		Use:   "drift --against DIR",
		Short: "Compare a folder of policy YAML (a git checkout) with the live policy and the recorded flows; exit 1 on drift",
		Long: `drift reports flows seen at runtime that the folder's policy would deny,
rules in the folder that no recorded flow used, live rules (learned ones) that
are not in the folder, rules that differ, and modes that differ. It exits 0
without drift, 1 with drift, 2 when it could not tell. --format github prints
GitHub Actions annotations (::error file=…::…) for a pull-request check.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch format {
			case "text", "json", "github":
			default:
				return diffError(fmt.Errorf("--format %q: want text, json or github", format))
			}
			if dir == "" {
				return diffError(errors.New("--against DIR is required"))
			}
			body, files, err := policyFiles(dir)
			if err != nil {
				return diffError(err)
			}
			c, err := g.Client()
			if err != nil {
				return diffError(err)
			}
			rep, err := c.Drift(cmd.Context(), body, since)
			if err != nil {
				return diffError(err)
			}
			drift := rep.Drift || unusedIsDrift && len(rep.Unused) > 0
			w := cmd.OutOrStdout()
			switch format {
			case "json":
				if err := printObject(w, "json", rep, nil); err != nil {
					return diffError(err)
				}
			case "github":
				printDriftGitHub(w, rep, files, unusedIsDrift)
			default:
				printDriftText(w, rep)
			}
			if drift {
				return ExitCode(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "against", "", "folder of policy YAML (or one file)")
	f.StringVar(&since, "since", "", "only flows seen within this duration (default: the whole history)")
	f.StringVar(&format, "format", "text", "output: text, json or github")
	f.BoolVar(&unusedIsDrift, "unused-is-drift", false, "count rules no recorded flow used as drift")
	return cmd
}

func printDriftText(w io.Writer, rep *explain.DriftReport) {
	if !rep.Drift {
		fmt.Fprintf(w, "no drift (%d recorded flows compared)\n", rep.Flows)
	} else {
		fmt.Fprintf(w, "drift (%d recorded flows compared)\n", rep.Flows)
	}
	if len(rep.Denied) > 0 {
		fmt.Fprintln(w, "\nflows seen at runtime that the folder's policy would deny:")
		printGroups(w, rep.Denied)
	}
	refs := func(title string, rs []explain.RuleRef) {
		if len(rs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, r := range rs {
			fmt.Fprintf(w, "  %s %s %s (origin %s)\n", r.Policy, r.Direction, r.Rule, r.Origin)
		}
	}
	refs("live rules not in the folder", rep.NotInGit)
	refs("rules in the folder not live", rep.NotLive)
	refs("rules that differ between the folder and live", rep.Changed)
	refs("rules in the folder no recorded flow used", rep.Unused)
	for _, m := range rep.Modes {
		fmt.Fprintf(w, "\nmode of %s: %s in the folder, %s live\n", m.Policy, orNone(m.Git), orNone(m.Live))
	}
}

// printDriftGitHub writes GitHub Actions workflow commands: one annotation
// per difference, on the file that holds the policy when known.
func printDriftGitHub(w io.Writer, rep *explain.DriftReport, files map[string]string, unusedIsDrift bool) {
	esc := func(s string) string {
		r := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
		return r.Replace(s)
	}
	escProp := func(s string) string {
		r := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C")
		return r.Replace(s)
	}
	annotate := func(level, policy, title, msg string) {
		props := "title=" + escProp(title)
		if f, ok := files[policy]; ok {
			props = "file=" + escProp(f) + "," + props
		}
		fmt.Fprintf(w, "::%s %s::%s\n", level, props, esc(msg))
	}
	for _, gr := range rep.Denied {
		annotate("error", gr.Segment, "Bulkhead drift: flows this policy would deny",
			fmt.Sprintf("%d flows (%d messages) of %s seen at runtime (recorded rule %s) are allowed by no rule here",
				gr.Flows, gr.Count, gr.Segment, orNone(ruleOrReason(gr.Rule, gr.RecordedReason))))
	}
	for _, r := range rep.NotInGit {
		annotate("error", r.Policy, "Bulkhead drift: live rule missing", fmt.Sprintf("%s rule %s of %s (origin %s) is live but not in this folder", r.Direction, r.Rule, r.Policy, r.Origin))
	}
	for _, r := range rep.NotLive {
		annotate("error", r.Policy, "Bulkhead drift: rule not live", fmt.Sprintf("%s rule %s of %s is not in the live policy", r.Direction, r.Rule, r.Policy))
	}
	for _, r := range rep.Changed {
		annotate("error", r.Policy, "Bulkhead drift: rule differs", fmt.Sprintf("%s rule %s of %s differs from the live one", r.Direction, r.Rule, r.Policy))
	}
	for _, m := range rep.Modes {
		annotate("error", m.Policy, "Bulkhead drift: mode differs", fmt.Sprintf("mode of %s is %s here, %s live", m.Policy, orNone(m.Git), orNone(m.Live)))
	}
	level := "warning"
	if unusedIsDrift {
		level = "error"
	}
	for _, r := range rep.Unused {
		annotate(level, r.Policy, "Bulkhead: rule unused", fmt.Sprintf("%s rule %s of %s allowed none of the %d recorded flows", r.Direction, r.Rule, r.Policy, rep.Flows))
	}
	if !rep.Drift {
		fmt.Fprintf(w, "::notice title=Bulkhead::no drift (%d recorded flows compared)\n", rep.Flows)
	}
}
