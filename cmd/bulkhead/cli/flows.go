package cli

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

func flowsCommand(g *Globals, violations bool) *cobra.Command {
	var segment string
	var limit int
	var all bool
	use, short := "flows", "Show the flows the proxies reported, newest first"
	if violations {
		use, short = "violations", "Show the messages no rule allowed, newest first"
	}
	cmd := &cobra.Command{
		Use:   use + " [--segment [NAMESPACE/]NAME] [--limit N]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (server default) or more", limit)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			// Without --segment: the namespace's segments, unless -A.
			q := Query{Limit: limit}
			if !all {
				q.Segment = g.Namespace
			}
			if segment != "" {
				ns, name, err := segmentArg(segment, g.Namespace)
				if err != nil {
					return err
				}
				q.Segment = ns + "/" + name
			}
			get := c.Flows
			if violations {
				get = c.Violations
			}
			recs, err := get(cmd.Context(), q)
			if err != nil {
				return err
			}
			if recs == nil {
				recs = []FlowRecord{}
			}
			return printObject(cmd.OutOrStdout(), g.Output, recs, func(t *table) { flowRows(t, recs, violations) })
		},
	}
	cmd.Flags().StringVar(&segment, "segment", "", "only records from or to this segment ([NAMESPACE/]NAME)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most N records, newest first (0: all the server keeps)")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "records of every namespace")
	return cmd
}

func flowRows(t *table, recs []FlowRecord, violations bool) {
	h := []string{"LAST SEEN", "DIRECTION", "SOURCE", "DESTINATION", "PROTOCOL", "L7", "VERDICT", "MODE", "RULE", "COUNT"}
	if violations {
		h = append(h, "REASON")
	}
	t.rows = append(t.rows, h)
	for _, r := range recs {
		dst := r.DstSegment
		if dst == "" {
			dst = r.DstName // an egress destination outside the cluster, by name
		}
		row := []any{r.LastSeen, r.Direction, endpoint(r.SrcSegment, r.SrcIP, 0), endpoint(dst, r.DstIP, r.DstPort),
			r.Protocol, l7Detail(r), r.Verdict, r.Mode, r.Rule, r.Count}
		if violations {
			row = append(row, r.Reason)
		}
		t.row(true, row...)
	}
	t.empty = "No flows found."
	if violations {
		t.empty = "No violations found."
	}
}

// l7Detail is a record's message in one cell, the same for every protocol:
// verb, sub-command, resources (comma-separated) and aux in parentheses —
// "GET /users/{id} (api.example)", "CONFIG SET" (Redis keys are never
// reported), "CLIENT_HELLO api.example.test (h2)", "SELECT orders,items
// (shop)". Empty for a connection-level (L4) record. The values come from
// the network: control characters are escaped so that they cannot drive
// the operator's terminal.
func l7Detail(r FlowRecord) string {
	var b strings.Builder
	word := func(s string) {
		if s == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		writeEscaped(&b, s)
	}
	word(r.Verb)
	word(r.Sub)
	if r.Resource != "" || len(r.MoreResources) > 0 {
		word(strings.Join(append([]string{r.Resource}, r.MoreResources...), ","))
	}
	if r.Aux != "" {
		word("(" + r.Aux + ")")
	}
	return b.String()
}

// writeEscaped writes s with control characters (C0, DEL, C1) and bytes
// that are not UTF-8 escaped: \xNN for a byte, \uNNNN for a C1 control.
func writeEscaped(b *strings.Builder, s string) {
	for len(s) > 0 {
		c, n := utf8.DecodeRuneInString(s)
		switch {
		case c == utf8.RuneError && n == 1:
			fmt.Fprintf(b, "\\x%02x", s[0])
		case c < 0x80 && unicode.IsControl(c):
			fmt.Fprintf(b, "\\x%02x", c)
		case unicode.IsControl(c):
			fmt.Fprintf(b, "\\u%04x", c)
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
}

// endpoint is "segment (ip)" or the IP alone, with ":port" when port > 0.
func endpoint(seg, ip string, port int) string {
	s := ip
	if port > 0 {
		s = fmt.Sprintf("%s:%d", ip, port)
	}
	if seg != "" {
		s = seg + " (" + s + ")"
	}
	if s == "" {
		return "-"
	}
	return s
}

func proxiesCommand(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "proxies",
		Short: "Show the proxies (xDS nodes) and the config versions they accepted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			ps, err := c.Proxies(cmd.Context())
			if err != nil {
				return err
			}
			if ps == nil {
				ps = []ProxyStatus{}
			}
			return printObject(cmd.OutOrStdout(), g.Output, ps, func(t *table) {
				t.header(true, "NODE", "CONNECTED", "POLICY", "IDENTITIES", "NACKS", "LAST ERROR", "LAST SEEN")
				for _, p := range ps {
					var nacks uint64
					var lastErr string
					for _, ts := range p.Types {
						nacks += ts.Nacks
						if ts.LastError != "" {
							lastErr = ts.LastError
						}
					}
					t.row(true, p.Node, p.Connected, ackedVersion(p, "bulkhead.v1.ProxyPolicy"), ackedVersion(p, "bulkhead.v1.Identity"), nacks, lastErr, p.LastSeen)
				}
				if len(ps) == 0 {
					t.empty = "No proxies found."
				}
			})
		},
	}
}

// ackedVersion is the version the node accepted of the type whose URL ends
// in name, shortened; "-" when none.
func ackedVersion(p ProxyStatus, name string) string {
	for _, ts := range p.Types {
		if strings.HasSuffix(ts.Type, "/"+name) || ts.Type == name {
			v := short(ts.AckedVersion)
			if ts.NackedVersion != "" && ts.NackedVersion != ts.AckedVersion {
				v += " (nacked " + short(ts.NackedVersion) + ")"
			}
			return cell(v)
		}
	}
	return "-"
}

// short keeps the end of a long version: the part that changes.
func short(v string) string {
	if len(v) > 16 {
		return "…" + v[len(v)-12:]
	}
	return v
}
