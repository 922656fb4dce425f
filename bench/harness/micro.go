package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// MicroResult is one `go test -bench` result line.
type MicroResult struct {
	// Package is the import path, relative to the module
	// ("protocols/redis").
	Package string
	// Name is the benchmark's name without "Benchmark" and without the
	// GOMAXPROCS suffix ("ParseRequest/get").
	Name    string
	NsPerOp float64
	// NsPerMsg is the benchmark's own "ns/msg" metric, the time per
	// message of a benchmark whose operation parses several (a recorded
	// session, a pipeline, a transaction); 0: not reported.
	NsPerMsg    float64
	MBPerSec    float64 // 0: not reported (no b.SetBytes)
	BytesPerOp  float64
	AllocsPerOp float64
	// PerMessage marks the benchmarks the parser-and-verdict target applies
	// to: a parser's ParseRequest/ParseReply and the engine's message
	// verdicts, judged by Ns.
	PerMessage bool
}

// Ns is the time per message the target judges: NsPerMsg where the
// benchmark reports it, else NsPerOp.
func (r MicroResult) Ns() float64 {
	if r.NsPerMsg > 0 {
		return r.NsPerMsg
	}
	return r.NsPerOp
}

// MicroRun is the outcome of `go test -bench` over some packages.
type MicroRun struct {
	Command  string
	Results  []MicroResult
	Failures []string // packages that failed to build or whose benchmarks failed
}

// runMicro runs the benchmarks of pkgs (patterns such as ./protocols/...)
// in dir, the module's root, with GOMAXPROCS=1 (-cpu 1) and benchtime when
// set ("1x" for a smoke run). A package that fails is listed in Failures;
// the others are still reported.
func runMicro(ctx context.Context, dir string, pkgs []string, benchtime string, nice int) (*MicroRun, error) {
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-cpu", "1", "-count", "1"}
	if benchtime != "" {
		args = append(args, "-benchtime", benchtime)
	}
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, "nice", append([]string{"-n", strconv.Itoa(nice), "go"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	run := parseMicro(out, 1)
	run.Command = "go " + strings.Join(args, " ")
	if err != nil && len(run.Failures) == 0 {
		// Not a package failure we could see: the go command itself.
		return run, fmt.Errorf("%s: %w: %s", run.Command, err, clip(out))
	}
	return run, nil
}

// benchLine is "BenchmarkName/sub-2   1000   123 ns/op   45 MB/s ...".
var benchLine = regexp.MustCompile(`^Benchmark(\S+)\s+\d+\s+(.*)$`)

// failure describes a failure line of go test's output, or returns "":
// "FAIL\t<pkg> [build failed]", "FAIL\t<pkg>\t0.1s", "--- FAIL: BenchmarkX".
func failure(line, pkg string) string {
	if rest, ok := strings.CutPrefix(line, "--- FAIL: "); ok {
		return pkg + ": " + strings.TrimSpace(rest)
	}
	rest, ok := strings.CutPrefix(line, "FAIL\t")
	if !ok {
		return ""
	}
	f := strings.Split(rest, "\t")
	p := relPkg(strings.TrimSpace(f[0]))
	if p, ok := strings.CutSuffix(p, " [build failed]"); ok {
		return p + ": build failed"
	}
	if p, ok := strings.CutSuffix(p, " [setup failed]"); ok {
		return p + ": setup failed"
	}
	return p + ": failed"
}

// parseMicro reads the output of `go test -bench -benchmem -cpu <cpu>`
// over several packages. go test appends "-<cpu>" to the names unless cpu
// is 1; only that suffix is trimmed, so "pipeline-16" at -cpu 1 keeps its
// name.
func parseMicro(out []byte, cpu int) *MicroRun {
	suffix := ""
	if cpu != 1 {
		suffix = "-" + strconv.Itoa(cpu)
	}
	run := &MicroRun{}
	pkg := ""
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = relPkg(strings.TrimSpace(p))
			continue
		}
		if f := failure(line, pkg); f != "" {
			if !seen[f] {
				seen[f] = true
				run.Failures = append(run.Failures, f)
			}
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		if suffix != "" {
			name = strings.TrimSuffix(name, suffix)
		}
		r := MicroResult{Package: pkg, Name: name}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				r.NsPerOp = v
			case "ns/msg":
				r.NsPerMsg = v
			case "MB/s":
				r.MBPerSec = v
			case "B/op":
				r.BytesPerOp = v
			case "allocs/op":
				r.AllocsPerOp = v
			}
		}
		r.PerMessage = perMessage(r.Package, r.Name, r.NsPerMsg > 0)
		run.Results = append(run.Results, r)
	}
	return run
}

// multiMessage matches sub-benchmarks that parse many messages per
// operation (pipelines, recorded sessions, streams, batches): their ns/op
// is not per message, so the target applies only where they report
// ns/msg.
var multiMessage = regexp.MustCompile(`pipeline|recorded|recording|stream|batch|records|nginx|\btx\b`)

// untypical matches sub-benchmarks whose messages are not what a client
// typically sends (input cut into tiny reads, one message of many answers,
// rows or keys, a megabyte row): they measure limits, not the typical
// message, and are listed unjudged.
var untypical = regexp.MustCompile(`reads|one-byte|\d+-(answers|rows|keys)|big-row`)

// perMessage says whether the parser-and-verdict target (≤ 100 ns per
// typical message, 0 allocs) applies to a benchmark: a parser's
// ParseRequest/ParseReply or the engine's message verdicts, on typical
// messages, timed per message (one message per operation, or ns/msg
// reported by the benchmark: hasPerMsg).
func perMessage(pkg, name string, hasPerMsg bool) bool {
	top, _, _ := strings.Cut(name, "/")
	if untypical.MatchString(name) || !hasPerMsg && multiMessage.MatchString(name) {
		return false
	}
	switch {
	case strings.HasPrefix(pkg, "protocols/"):
		return top == "ParseRequest" || top == "ParseReply"
	case pkg == "dataplane/enforce":
		return top == "Message" || top == "GenericMessage"
	}
	return false
}

// relPkg trims the module path from an import path.
func relPkg(p string) string {
	return strings.TrimPrefix(strings.TrimPrefix(p, module), "/")
}

const module = "github.com/bulkhead-io/bulkhead"
