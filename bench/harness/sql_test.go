package harness

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
)

// TestParsePgbench: pgbench 15's summary of a -S run and the first 100
// lines of its sampled transaction log (both recorded) give tps, the
// transactions and the log's percentiles; failed transactions, a missing
// summary and an empty log are errors.
func TestParsePgbench(t *testing.T) {
	out, err := os.ReadFile(filepath.Join("testdata", "pgbench-S.txt"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join("testdata", "pgbench-S.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lat, err := appendPgbenchLog(nil, bufio.NewScanner(f))
	if err != nil || len(lat) != 100 {
		t.Fatalf("log: %d latencies, %v", len(lat), err)
	}
	r, err := parsePgbench(out, lat)
	if err != nil {
		t.Fatal(err)
	}
	us := time.Microsecond
	if r.Throughput != 13165.100349 || r.Ops != 23271 || r.P50 != 379*us || r.P90 != 3668*us || r.P99 != 18834*us {
		t.Errorf("parsed %+v", r)
	}
	if e := time.Duration(r.Ops / r.Throughput * float64(time.Second)); r.Elapsed != e || e < 1700*time.Millisecond || e > 1800*time.Millisecond {
		t.Errorf("elapsed %v, want %v", r.Elapsed, e)
	}
	failed := strings.Replace(string(out), "failed transactions: 0 ", "failed transactions: 3 ", 1)
	for name, tc := range map[string]struct {
		out string
		lat []time.Duration
	}{
		"failed":     {failed, lat},
		"no log":     {string(out), nil},
		"none done":  {strings.Replace(string(out), "processed: 23271", "processed: 0", 1), lat},
		"no summary": {"pgbench: error: connection to server failed\n", lat},
		"zero tps":   {strings.Replace(string(out), "tps = 13165.100349", "tps = 0", 1), lat},
	} {
		if r, err := parsePgbench([]byte(tc.out), tc.lat); err == nil {
			t.Errorf("%s: parsed as %+v, want an error", name, r)
		}
	}
	if _, err := appendPgbenchLog(nil, bufio.NewScanner(strings.NewReader("13 2 x 0 1795830517 70334\n"))); err == nil {
		t.Error("a log line with a bad latency: no error")
	}
	if _, err := appendPgbenchLog(nil, bufio.NewScanner(strings.NewReader("13 2 154\n"))); err == nil {
		t.Error("a short log line: no error")
	}
}

// TestParseSysbench: sysbench 1.0.20's output of an oltp_read_only run
// with --histogram=on (recorded) gives transactions per second, the
// queries and the histogram's percentiles; ignored errors, no histogram
// and no summary are errors.
func TestParseSysbench(t *testing.T) {
	out, err := os.ReadFile(filepath.Join("testdata", "sysbench-oltp-ro.txt"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseSysbench(out)
	if err != nil {
		t.Fatal(err)
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	if r.Throughput != 2326.03 || r.Ops != 74784 || r.Elapsed != ms(2009.1) || r.P50 != ms(6.669) || r.P90 != ms(9.734) || r.P99 != ms(17.319) {
		t.Errorf("parsed %+v", r)
	}
	var noHist strings.Builder
	for l := range strings.Lines(string(out)) {
		if !strings.Contains(l, " |") {
			noHist.WriteString(l)
		}
	}
	for name, o := range map[string]string{
		"ignored errors": strings.Replace(string(out), "ignored errors:                      0 ", "ignored errors:                      2 ", 1),
		"no histogram":   noHist.String(),
		"no summary":     "FATAL: unable to connect to MySQL server\n",
	} {
		if r, err := parseSysbench([]byte(o)); err == nil {
			t.Errorf("%s: parsed as %+v, want an error", name, r)
		}
	}
}

// TestSQLPolicy: the bench policy, compiled as the proxy does, parses the
// SQL ports and lets the client send what pgbench -S and sysbench
// oltp_read_only send in database bench, and denies other verbs, tables
// and databases.
func TestSQLPolicy(t *testing.T) {
	pol, client := cachedBenchPolicy(t)
	if got := pol.Protocol(pgPort); got != "postgres" {
		t.Errorf("port %d protocol %q, want postgres", pgPort, got)
	}
	if got := pol.Protocol(mariadbPort); got != "mysql" {
		t.Errorf("port %d protocol %q, want mysql", mariadbPort, got)
	}
	for _, tc := range []struct {
		port                uint16
		verb, resource, aux string
		want                enforce.Verdict
	}{
		{pgPort, "SSL", "", "", enforce.Allow},
		{pgPort, "SELECT", "pgbench_accounts", sqlDB, enforce.Allow},
		{pgPort, "SELECT", "pg_catalog.pg_class", sqlDB, enforce.Allow},
		{pgPort, "SELECT", "pgbench_accounts", "postgres", enforce.Deny},
		{pgPort, "SELECT", "pgbench_tellers", sqlDB, enforce.Deny},
		{pgPort, "DELETE", "pgbench_history", sqlDB, enforce.Deny},
		{mariadbPort, "SELECT", "sbtest1", sqlDB, enforce.Allow},
		{mariadbPort, "BEGIN", "", sqlDB, enforce.Allow},
		{mariadbPort, "COMMIT", "", sqlDB, enforce.Allow},
		{mariadbPort, "UPDATE", "sbtest1", sqlDB, enforce.Deny},
		{mariadbPort, "SELECT", "sbtest2", sqlDB, enforce.Deny},
		{mariadbPort, "SELECT", "", sqlDB, enforce.Deny},
	} {
		if d := judge(t, pol, client, tc.port, tc.verb, tc.resource, tc.aux); d.Verdict != tc.want {
			t.Errorf("port %d: %s %q in %q: %+v, want %v", tc.port, tc.verb, tc.resource, tc.aux, d, tc.want)
		}
	}
}
