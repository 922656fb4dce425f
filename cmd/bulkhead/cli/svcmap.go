package cli

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// MapQuery selects what Map draws; empty fields select everything.
type MapQuery struct {
	Format    string // "svg" or "html" (default)
	Namespace string
	Segment   string // "ns/name" or a bare name
}

// Map returns the segment map (GET /v1/map) as SVG or as one
// self-contained HTML page.
func (c *Client) Map(ctx context.Context, q MapQuery) ([]byte, error) {
	v := url.Values{}
	if q.Format != "" {
		v.Set("format", q.Format)
	}
	if q.Namespace != "" {
		v.Set("namespace", q.Namespace)
	}
	if q.Segment != "" {
		v.Set("segment", q.Segment)
	}
	return c.do(ctx, "GET", "/v1/map", v, "", nil)
}

// mapCommand is `bulkhead map`.
func mapCommand(g *Globals) *cobra.Command {
	var segment, format, file string
	cmd := &cobra.Command{
		Use:   "map",
		Short: "Draw the segments and the flows between them (SVG or a self-contained HTML page)",
		Long: "Draw the segments and the recorded flows between them: edges coloured by verdict\n" +
			"(green allowed, orange violation, red denied) and labelled with the protocol and its\n" +
			"main L7 verbs. The HTML page opens in a browser without a server and filters by\n" +
			"namespace, segment and verdict. -n filters only when given.",
		Example: "  bulkhead map -f map.html\n  bulkhead map -n shop --segment cart --format svg -f cart.svg",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := MapQuery{Format: format}
			if q.Format == "" {
				q.Format = "html"
				if strings.EqualFold(filepath.Ext(file), ".svg") {
					q.Format = "svg"
				}
			}
			if q.Format != "svg" && q.Format != "html" {
				return fmt.Errorf("--format must be svg or html, not %q", q.Format)
			}
			if cmd.Flags().Changed("namespace") {
				if err := checkName("namespace", g.Namespace); err != nil {
					return err
				}
				q.Namespace = g.Namespace
			}
			if segment != "" {
				ns, name, err := segmentArg(segment, g.Namespace)
				if err != nil {
					return err
				}
				q.Segment = ns + "/" + name
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			b, err := c.Map(cmd.Context(), q)
			if err != nil {
				return err
			}
			if file == "" || file == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := os.WriteFile(file, b, 0o644); err != nil {
				return fmt.Errorf("write map: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Wrote %s (%s, %d bytes).\n", file, q.Format, len(b))
			return nil
		},
	}
	cmd.Flags().StringVar(&segment, "segment", "", "show this segment (NAME in -n's namespace, or NS/NAME) and its peers")
	cmd.Flags().StringVar(&format, "format", "", "svg or html (default: from -f's extension, else html)")
	cmd.Flags().StringVarP(&file, "file", "f", "", "write to FILE instead of stdout")
	return cmd
}
