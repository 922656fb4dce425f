package cli

import (
	"context"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/bulkhead-io/bulkhead/controlplane/admin"
	"github.com/bulkhead-io/bulkhead/controlplane/promote"
)

// Promotions returns the recent automatic promotions and vetoes, newest
// first.
func (c *Client) Promotions(ctx context.Context) ([]promote.Record, error) {
	var out []promote.Record
	return out, c.getJSON(ctx, "/v1/promotions", nil, &out)
}

// VetoPromotion stops automatic promotion of segment namespace/name.
func (c *Client) VetoPromotion(ctx context.Context, namespace, name string) (admin.VetoResult, error) {
	var out admin.VetoResult
	if err := checkName("namespace", namespace); err != nil {
		return out, err
	}
	if err := checkName("segment", name); err != nil {
		return out, err
	}
	_, err := c.do(ctx, http.MethodPost, "/v1/segments/"+namespace+"/"+name+"/promotion/veto", nil, "", nil)
	if err != nil {
		return out, err
	}
	return admin.VetoResult{Namespace: namespace, Name: name, Vetoed: true}, nil
}

// promotionCommands are `bulkhead promotions` and `bulkhead promotion veto`.
func promotionCommands(g *Globals) []*cobra.Command {
	list := &cobra.Command{
		Use:   "promotions",
		Short: "List recent automatic promotions and vetoes (spec.promotion)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			recs, err := c.Promotions(cmd.Context())
			if err != nil {
				return err
			}
			return printObject(cmd.OutOrStdout(), g.Output, recs, func(t *table) {
				t.header(true, "AGE", "SEGMENT", "FROM", "TO", "REASON", "MESSAGE")
				for _, r := range recs {
					t.row(true, r.Time, r.Segment, string(r.From), string(r.To), r.Reason, r.Message)
				}
				if len(recs) == 0 {
					t.empty = "No promotions yet."
				}
			})
		},
	}
	veto := &cobra.Command{
		Use:     "veto SEGMENT",
		Short:   "Stop automatic promotion of a segment (sets spec.promotion.vetoed)",
		Example: "  bulkhead promotion veto cart -n shop",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, name, err := segmentArg(args[0], g.Namespace)
			if err != nil {
				return err
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			res, err := c.VetoPromotion(cmd.Context(), ns, name)
			if err != nil {
				return err
			}
			return printObject(cmd.OutOrStdout(), g.Output, res, func(t *table) {
				t.empty = fmt.Sprintf("Promotion of %s/%s vetoed.", ns, name)
			})
		},
	}
	group := &cobra.Command{
		Use:   "promotion",
		Short: "Control automatic promotion of segments",
	}
	group.AddCommand(veto)
	return []*cobra.Command{list, group}
}
