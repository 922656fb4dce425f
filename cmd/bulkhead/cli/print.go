package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// table collects rows for text/tabwriter. A header or row called with
// first=false drops its first column (NAMESPACE without -A).
type table struct {
	rows  [][]string
	empty string // printed instead of a table without rows
}

func (t *table) header(first bool, cols ...string) { t.add(first, cols...) }

func (t *table) row(first bool, cols ...any) {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = cell(c)
	}
	t.add(first, s...)
}

func (t *table) add(first bool, cols ...string) {
	if !first {
		cols = cols[1:]
	}
	t.rows = append(t.rows, cols)
}

func (t *table) write(w io.Writer) error {
	if len(t.rows) <= 1 && t.empty != "" {
		_, err := fmt.Fprintln(w, t.empty)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func cell(v any) string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return "-"
		}
		// Keep the columns: no tabs or newlines from the server.
		return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(v)
	case time.Time:
		return age(v)
	case bool:
		if v {
			return "yes"
		}
		return "no"
	default:
		return fmt.Sprint(v)
	}
}

// age is how long ago t was, kubectl style ("5s", "3m2s", "4h"); "-" for
// the zero time.
func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	if d < 0 {
		d = 0
	}
	return duration.HumanDuration(d)
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// printObject writes v as JSON or YAML, or the table that fill builds.
func printObject(w io.Writer, format string, v any, fill func(*table)) error {
	switch format {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	var t table
	fill(&t)
	return t.write(w)
}
