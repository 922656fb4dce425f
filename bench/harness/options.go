package harness

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Profile sizes a run: how many rounds, how long each load runs.
type Profile struct {
	// Name is "full" or "smoke"; it is printed in the report.
	Name string
	// Rounds: each arm of each scenario runs this many times, the arms
	// interleaved (direct, HAProxy, Bulkhead, direct, …); the report
	// shows medians.
	Rounds int
	// RedisRequests is redis-benchmark's -n at -P 1, RedisPipelined at
	// -P 16, ChurnRequests with -k 0 (one connection per request).
	RedisRequests, RedisPipelined, ChurnRequests int
	// BulkTime is iperf3's -t.
	BulkTime time.Duration
	// HTTPTime is how long wrk and fortio run (whole seconds); HTTPRate
	// fortio's fixed rate in requests per second, zero for half of what
	// the Bulkhead arm reached under wrk in the same run.
	HTTPTime time.Duration
	HTTPRate int
	// DNSTime is dnsperf's -l, TLSTime how long wrk makes TLS
	// connections (whole seconds, at least 1s when the group runs).
	DNSTime, TLSTime time.Duration
	// IdleConns are the connection counts at which the proxies' resident
	// memory is read, in increasing order; the first is usually 0.
	IdleConns []int
	// Micro are the packages `go test -bench` runs over, MicroBenchtime
	// its -benchtime ("" for Go's default of 1s). No packages: none run.
	Micro          []string
	MicroBenchtime string
	// Nice is the nice level of every process of every arm (load
	// generator, servers, proxies), the same for all: on a machine shared
	// with other work, a negative level keeps that work from deciding the
	// results. Zero: normal priority.
	Nice int
	// ProfileTime is how long a CPU profile of the Bulkhead arm is taken
	// during each load scenario's first round when Options.PprofDir is
	// set.
	ProfileTime time.Duration
	// SQLTime is how long pgbench and sysbench run (whole seconds, the
	// "sql" group).
	SQLTime time.Duration
	// KafkaMessages is how many messages kcat produces, one Produce
	// request each (the "kafka" group).
	KafkaMessages int
}

// Full is `make bench`: loads of several seconds, three rounds, every
// parser and the verdict path.
func Full() Profile {
	return Profile{
		Name:           "full",
		Rounds:         3,
		RedisRequests:  150_000,
		RedisPipelined: 600_000,
		ChurnRequests:  20_000,
		BulkTime:       6 * time.Second,
		HTTPTime:       10 * time.Second,
		IdleConns:      []int{0, 1_000, 10_000},
		Micro:          []string{"./protocols/...", "./dataplane/..."},
		Nice:           -10,
		ProfileTime:    4 * time.Second,
		SQLTime:        10 * time.Second,
		DNSTime:        10 * time.Second,
		TLSTime:        10 * time.Second,
		KafkaMessages:  150_000,
	}
}

// Smoke is `make bench-smoke`: the same harness with tiny loads, so that it
// runs in seconds and never rots. Its numbers mean nothing.
func Smoke() Profile {
	return Profile{
		Name:           "smoke",
		Rounds:         1,
		RedisRequests:  2_000,
		RedisPipelined: 8_000,
		ChurnRequests:  300,
		BulkTime:       time.Second,
		HTTPTime:       time.Second,
		HTTPRate:       2000,
		IdleConns:      []int{0, 50},
		Micro:          []string{"./protocols/redis", "./dataplane/enforce"},
		MicroBenchtime: "1x",
		ProfileTime:    time.Second,
		SQLTime:        2 * time.Second, // pgbench's -T includes connecting 16 clients
		DNSTime:        time.Second,
		TLSTime:        time.Second,
		KafkaMessages:  1_000,
	}
}

// Options configure Run.
type Options struct {
	// BinDir holds bulkhead-proxy. Required.
	BinDir string
	// ModuleDir is the module's root, where `go test -bench` runs.
	// Required when the profile has Micro packages.
	ModuleDir string
	// Prefix and Subnet are the lab's (test/lab). Defaults "bhbench" and
	// 198.18.50.0/24.
	Prefix string
	Subnet netip.Prefix
	// Profile sizes the run. Zero: Full().
	Profile Profile
	// PprofDir, when set, receives CPU profiles of the Bulkhead arm
	// (<scenario>.pprof), taken during the first round of each load
	// scenario from the proxy's /debug/pprof/profile.
	PprofDir string
	// Scenarios selects what runs by group: redis, churn, bulk, http,
	// idle, micro. Empty: everything.
	Scenarios []string
	// Progress receives one line per measurement as the run goes. Nil:
	// discarded.
	Progress io.Writer
	// Log receives the lab's log. Nil: discarded.
	Log *slog.Logger
}

// Groups are the scenario groups Options.Scenarios selects from.
var Groups = append([]string{"redis", "churn", "bulk", "http", "idle", "micro"}, suiteGroups()...)

// selected reports whether group runs.
func (o *Options) selected(group string) bool {
	return len(o.Scenarios) == 0 || slices.Contains(o.Scenarios, group)
}

func (o *Options) defaults() error {
	if o.BinDir == "" {
		return errors.New("harness: no BinDir (the directory of bulkhead-proxy)")
	}
	if o.Prefix == "" {
		o.Prefix = "bhbench"
	}
	if !o.Subnet.IsValid() {
		o.Subnet = netip.MustParsePrefix("198.18.50.0/24")
	}
	if o.Profile.Name == "" {
		o.Profile = Full()
	}
	p := o.Profile
	if p.Nice < -20 || p.Nice > 19 {
		return fmt.Errorf("harness: profile %q: nice %d outside -20..19", p.Name, p.Nice)
	}
	if p.Rounds < 1 || p.RedisRequests < 1 || p.RedisPipelined < 1 || p.ChurnRequests < 1 || p.BulkTime < time.Second || p.HTTPTime < time.Second || p.HTTPRate < 0 {
		return fmt.Errorf("harness: profile %q: rounds and request counts must be positive, bulk and HTTP time at least 1s", p.Name)
	}
	for _, g := range o.Scenarios {
		if !slices.Contains(Groups, g) {
			return fmt.Errorf("harness: unknown scenario group %q (want one of %s)", g, strings.Join(Groups, ", "))
		}
	}
	if len(p.Micro) > 0 && o.ModuleDir == "" {
		return errors.New("harness: micro-benchmarks need ModuleDir")
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}
