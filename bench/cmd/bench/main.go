// Command bench runs Bulkhead's side-by-side load comparisons (direct,
// HAProxy, Bulkhead) and writes the Markdown report: `make bench` runs the
// full profile into bench/results/<date>-<commit>.md and latest.md,
// `-smoke` a run of a few seconds that prints the report.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bulkhead-io/bulkhead/bench/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var (
		bin      = flag.String("bin", "bin", "directory holding bulkhead-proxy (make build)")
		out      = flag.String("out", "", `directory for <date>-<commit>.md and latest.md (default bench/results; with -smoke, stdout only)`)
		smoke    = flag.Bool("smoke", false, "tiny loads: checks the harness, measures nothing")
		rounds   = flag.Int("rounds", 0, "rounds per scenario (0: the profile's)")
		pprofDir = flag.String("pprof-dir", "", "save CPU profiles of the Bulkhead arm here")
		prefix   = flag.String("prefix", "bhbench", "lab name prefix")
		subnet   = flag.String("subnet", "198.18.50.0/24", "lab subnet, inside 198.18.0.0/15")
		verbose  = flag.Bool("v", false, "log the lab's steps")
		only     = flag.String("scenarios", "", "comma-separated scenario groups to run ("+strings.Join(harness.Groups, ", ")+"; default all); a partial run is written to <date>-<groups>.md, never latest.md")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	sn, err := netip.ParsePrefix(*subnet)
	if err != nil {
		return fmt.Errorf("-subnet: %w", err)
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	binDir, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	prof := harness.Full()
	if *smoke {
		prof = harness.Smoke()
	} else if *out == "" {
		*out = filepath.Join(root, "bench", "results")
	}
	if *rounds > 0 {
		prof.Rounds = *rounds
	}
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelDebug
	}
	var groups []string
	if *only != "" {
		groups = strings.Split(*only, ",")
	}
	opts := harness.Options{
		Scenarios: groups,
		BinDir:    binDir, ModuleDir: root, Prefix: *prefix, Subnet: sn, Profile: prof, PprofDir: *pprofDir,
		Progress: os.Stderr, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})),
	}
	rep, err := harness.Run(ctx, opts)
	if err != nil {
		return err
	}
	rep.Date = time.Now()
	rep.Commit = commit(ctx, root)
	md := rep.Markdown()
	if *out == "" {
		_, err := os.Stdout.Write(md)
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	name := filepath.Join(*out, rep.Date.UTC().Format("2006-01-02")+"-"+rep.Commit+".md")
	files := []string{name, filepath.Join(*out, "latest.md")}
	if len(groups) > 0 {
		name = filepath.Join(*out, rep.Date.UTC().Format("2006-01-02")+"-"+strings.Join(groups, "+")+".md")
		files = []string{name}
	}
	for _, p := range files {
		if err := os.WriteFile(p, md, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintln(os.Stderr, "bench: wrote", strings.Join(files, " and "))
	return nil
}

// moduleRoot is the directory of the go.mod of the working directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run bench inside the bulkhead module")
	}
	return filepath.Dir(gomod), nil
}

// commit names the checked-out commit, "-dirty" when tracked files differ
// from it.
func commit(ctx context.Context, dir string) string {
	git := func(args ...string) string {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		out, _ := cmd.Output()
		return strings.TrimSpace(string(out))
	}
	c := git("rev-parse", "--short=12", "HEAD")
	if c == "" {
		return "unknown"
	}
	if git("status", "--porcelain", "--untracked-files=no") != "" {
		c += "-dirty"
	}
	return c
}
