// Package demo tells the story `make demo` tells, on one machine and the
// standalone control plane: four workloads (web, cart, redis, intruder) in
// network namespaces on a bridge, a real redis-server behind bulkhead-proxy,
// the control plane on the host; discover learns rules from real redis-cli
// traffic, protect denies what they do not allow, monitor lets it pass and
// reports it. Run is the story; Env, Attacks and friends are its steps,
// reusable by end-to-end tests.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// Options configure Run.
type Options struct {
	// BinDir holds bulkhead, bulkhead-controlplane and bulkhead-proxy.
	BinDir string
	// Out receives the story. Nil: os.Stdout.
	Out io.Writer
	// Keep leaves the temp dirs (control plane state, process output) in
	// place and prints where they are. Namespaces and processes go anyway.
	Keep bool
	// Verbose prints the lab's log and, on failure, more of each
	// process's output.
	Verbose bool
	// Prefix and Subnet of the lab; zero: "bhdemo" and 198.18.0.0/24. A
	// lab sweeps away what another with its prefix runs: tests that run
	// the demo while someone may be watching it use their own.
	Prefix string
	Subnet netip.Prefix
}

// discovery is the traffic of step 1: host, then redis-cli args.
var discovery = []struct {
	from string
	args []string
}{
	{"cart", []string{"SET", "cart:42", "apples"}},
	{"cart", []string{"GET", "cart:42"}},
	{"cart", []string{"EXPIRE", "cart:42", "3600"}},
	{"cart", []string{"INCR", "cart:visits"}},
	{"cart", []string{"DEL", "cart:old"}},
	{"web", []string{"GET", "cart:42"}},
}

// learned is what discovery must teach: peer segment → commands.
var learned = map[string][]string{
	"cart": {"del", "expire", "get", "incr", "set"},
	"web":  {"get"},
}

// Run tells the story and removes everything it made, also when ctx ends
// (Ctrl-C) or a step fails. It returns an error when a step fails or an
// attack's observed outcome differs from the expected one, so the demo
// doubles as a smoke test.
func Run(ctx context.Context, o Options) (err error) {
	start := time.Now()
	out := o.Out
	if out == nil {
		out = os.Stdout
	}
	p := &printer{w: out}
	log := slog.New(slog.DiscardHandler)
	if o.Verbose {
		log = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	p.title("Bulkhead demo: Layer-7 micro-segmentation of a Redis, standalone control plane")
	p.step("Setting up: four workloads in network namespaces on one bridge")
	e, err := Start(ctx, Config{BinDir: o.BinDir, Log: log, Keep: o.Keep, Prefix: o.Prefix, Subnet: o.Subnet})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", context.Cause(ctx))
		}
		return fmt.Errorf("set up: %w", err)
	}
	defer func() {
		switch {
		case ctx.Err() != nil:
			p.line("interrupted")
			err = fmt.Errorf("interrupted: %w", context.Cause(ctx))
		case err != nil:
			p.failure(e, o.Verbose)
		}
		p.step("Cleaning up")
		if cerr := e.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		} else {
			p.line("removed the namespaces %s-*, the bridge, the veths, the redirect rules and every process", e.Prefix)
		}
		if o.Keep {
			p.line("kept %s: the processes' output, and in demo/ the control plane's state and the workloads file", e.Lab.Dir())
		}
		if err == nil {
			p.line("done in %.1fs", time.Since(start).Seconds())
		}
	}()
	p.hosts(e)

	// 1. discover
	p.step("1. discover: cart and web talk to redis; the proxy reports, the control plane learns")
	for _, d := range discovery {
		res, err := e.RedisCLI(ctx, d.from, "", d.args...)
		if err != nil {
			return err
		}
		if c := Classify(res); c != Allowed {
			return fmt.Errorf("discover: %s: redis-cli %s: %s", d.from, strings.Join(d.args, " "), strings.TrimSpace(res))
		}
		p.line("%-5s$ redis-cli -h %s %-24s → %s", d.from, e.ServerAddr().Addr(), strings.Join(d.args, " "), firstLine(res))
	}
	t0 := time.Now()
	if err := e.WaitLearned(ctx, learned); err != nil {
		return fmt.Errorf("learning: %w", err)
	}
	p.line("learned %d rules in %.1fs", len(learned), time.Since(t0).Seconds())
	if err := p.cli(ctx, e, "policy", "export", "-n", e.Namespace); err != nil {
		return err
	}

	// 2. protect
	p.step("2. protect: what the rules do not allow is denied")
	if err := p.setMode(ctx, e, v1alpha1.ModeProtect); err != nil {
		return err
	}

	// 3. attacks
	p.step("3. attacks under protect")
	protect := Attacks("cart:42")
	if err := p.attacks(ctx, e, protect); err != nil {
		return err
	}
	p.line("Denied commands get Redis's own -ERR reply and the connection stays open: the last row's")
	p.line("session goes on to GET. (redis-cli reading stdin first asks COMMAND and COMMAND DOCS for")
	p.line("its hints; no rule allows them either, so they show among the violations below.)")

	// 4. monitor
	p.step("4. monitor: the same attacks pass, and are reported as violations")
	if err := p.setMode(ctx, e, v1alpha1.ModeMonitor); err != nil {
		return err
	}
	if err := p.attacks(ctx, e, Monitor(protect)); err != nil {
		return err
	}
	p.line("FLUSHALL really ran this time: GET finds nothing.")
	if err := e.WaitViolations(ctx, "flushall", "config", "eval", "keys"); err != nil {
		return fmt.Errorf("violations: %w", err)
	}
	return p.cli(ctx, e, "violations", "-n", e.Namespace)
}

// WaitLearned polls the export until the server's segment has, for each
// peer segment, a learned ingress rule allowing at least those Redis
// commands.
func (e *Env) WaitLearned(ctx context.Context, want map[string][]string) error {
	var last string
	err := e.Poll(ctx, 20*time.Second, func(ctx context.Context) (bool, error) {
		b, err := e.Client.Export(ctx, e.Namespace)
		if err != nil {
			return false, nil
		}
		ps, err := v1alpha1.UnmarshalYAML(b)
		if err != nil {
			return false, fmt.Errorf("export does not parse: %w", err)
		}
		have := map[string][]string{}
		for _, p := range ps {
			if p.Name != e.Server {
				continue
			}
			for _, r := range p.Spec.Ingress {
				if r.Origin != v1alpha1.OriginLearned || r.Redis == nil {
					continue
				}
				for _, peer := range r.Peers {
					have[peer.Segment] = append(have[peer.Segment], r.Redis.Commands...)
				}
			}
		}
		last = fmt.Sprint(have)
		for seg, cmds := range want {
			for _, c := range cmds {
				if !slices.Contains(have[seg], c) {
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("want learned rules %v, have %s: %w", want, last, err)
	}
	return nil
}

// WaitViolations polls the server's violations until each verb (lower
// case) appears.
func (e *Env) WaitViolations(ctx context.Context, verbs ...string) error {
	var seen map[string]bool
	err := e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		recs, err := e.Client.Violations(ctx, cliQuery(e.Namespace+"/"+e.Server))
		if err != nil {
			return false, nil
		}
		seen = map[string]bool{}
		for _, r := range recs {
			if r.Verdict == "violation" {
				seen[strings.ToLower(r.Verb)] = true
			}
		}
		for _, v := range verbs {
			if !seen[v] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("want violations for %v, have %v: %w", verbs, seen, err)
	}
	return nil
}

// printer writes the story.
type printer struct{ w io.Writer }

func (p *printer) title(s string) {
	fmt.Fprintf(p.w, "%s\n%s\n", s, strings.Repeat("=", len([]rune(s))))
}
func (p *printer) step(s string) { fmt.Fprintf(p.w, "\n▸ %s\n", s) }
func (p *printer) line(format string, a ...any) {
	fmt.Fprintf(p.w, "  "+format+"\n", a...)
}

func (p *printer) block(s string) {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return
	}
	fmt.Fprintf(p.w, "    %s\n", strings.ReplaceAll(s, "\n", "\n    "))
}

func (p *printer) hosts(e *Env) {
	tw := tabwriter.NewWriter(p.w, 0, 8, 2, ' ', 0)
	for _, h := range e.Lab.Hosts() {
		role := "client"
		switch h.Name() {
		case e.Server:
			role = "redis-server :6379 behind bulkhead-proxy (inbound redirected to :15006)"
		case "intruder":
			role = "client that no rule will allow"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t(netns %s)\n", h.Name(), h.Addr(), role, h.NetNS())
	}
	tw.Flush()
	p.line("the machine, %s on the bridge, runs bulkhead-controlplane: xDS and flow reports on %s, admin API on %s (bearer token in %s/admin-token)", e.Lab.HostAddr(), e.GRPCAddr, e.AdminURL, e.StateDir)
	p.line("proxy %s connected and acknowledged its policy", e.Node())
}

// cli runs the bulkhead binary and shows the command and its output.
func (p *printer) cli(ctx context.Context, e *Env, args ...string) error {
	fmt.Fprintf(p.w, "\n  $ bulkhead %s\n", strings.Join(args, " "))
	out, err := e.CLI(ctx, args...)
	p.block(out)
	if err != nil {
		return fmt.Errorf("bulkhead %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// setMode switches the server's segment with the CLI and waits until its
// proxy enforces the new mode.
func (p *printer) setMode(ctx context.Context, e *Env, m v1alpha1.Mode) error {
	if err := p.cli(ctx, e, "mode", "set", e.Server, string(m), "-n", e.Namespace); err != nil {
		return err
	}
	t0 := time.Now()
	s, err := e.WaitProxyMode(ctx, m, learnedRules()...)
	if err != nil {
		return err
	}
	p.line("proxy %s enforces %s with %d rules (revision %s) after %.1fs", e.Node(), s.Mode, len(s.Ingress), s.Revision, time.Since(t0).Seconds())
	return nil
}

// learnedRules are the names of the rules discovery teaches.
func learnedRules() []string {
	var names []string
	for peer := range learned {
		names = append(names, "from-"+peer+"-redis-6379")
	}
	slices.Sort(names)
	return names
}

// attacks runs them, prints the table and fails when a row differs.
func (p *printer) attacks(ctx context.Context, e *Env, attacks []Attack) error {
	res, err := e.RunAttacks(ctx, attacks)
	if err != nil {
		return err
	}
	fmt.Fprintln(p.w)
	tw := tabwriter.NewWriter(p.w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "  \tACTION\tEXPECTED\tOBSERVED\tREPLY")
	var bad []string
	for _, r := range res {
		mark := "✓"
		if !r.OK() {
			mark = "✗"
			bad = append(bad, fmt.Sprintf("%s: expected %s, observed %s (%s)", r.Action, r.Expect, r.Observed, oneLine(r.Output)))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", mark, r.Action, r.Expect, r.Observed, clip(oneLine(r.Output), 60))
	}
	tw.Flush()
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d attacks did not go as expected:\n  %s", len(bad), len(res), strings.Join(bad, "\n  "))
	}
	return nil
}

// failure shows the end of each process's output.
func (p *printer) failure(e *Env, verbose bool) {
	n := 8
	if verbose {
		n = 40
	}
	for _, pr := range []struct {
		name string
		proc *lab.Proc
	}{{"bulkhead-controlplane", e.ControlPlane}, {"bulkhead-proxy", e.Proxy}, {"redis-server", e.Redis}} {
		if pr.proc == nil {
			continue
		}
		fmt.Fprintf(p.w, "\n  last output of %s (%s):\n", pr.name, pr.proc.LogPath())
		p.block(pr.proc.Tail(n))
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if s == "" {
		return "(nil)"
	}
	return s
}

// oneLine joins the non-empty lines of s with " | ".
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	if len(parts) == 0 {
		return "(nil)"
	}
	return strings.Join(parts, " | ")
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
