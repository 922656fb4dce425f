package harness

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// result is what one run of a load tool measured.
type result struct {
	// Throughput in the scenario's unit (requests/s, Gbit/s).
	Throughput float64
	// P50, P90 and P99 latency; zero when the tool does not measure it.
	P50, P90, P99 time.Duration
	// Ops is what the proxy's CPU is divided by: requests, or gigabytes.
	Ops float64
	// Elapsed is how long the tool ran.
	Elapsed time.Duration
}

// parseRedisBenchmarkCSV reads the --csv output of redis-benchmark (7.x):
// a header, then one row per test. It returns the row of test (GET, SET),
// with requests = n, the requests the run was told to make. Lines that are
// not CSV rows (warnings) are skipped.
func parseRedisBenchmarkCSV(out []byte, test string, requests int) (result, error) {
	var lines []string
	for l := range strings.Lines(string(out)) {
		if strings.HasPrefix(l, `"`) {
			lines = append(lines, l)
		}
	}
	recs, err := csv.NewReader(strings.NewReader(strings.Join(lines, ""))).ReadAll()
	if err != nil {
		return result{}, fmt.Errorf("redis-benchmark csv: %w", err)
	}
	if len(recs) < 2 {
		return result{}, fmt.Errorf("redis-benchmark csv: no result rows in %q", clip(out))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, h := range []string{"test", "rps", "p50_latency_ms", "p99_latency_ms"} {
		if _, ok := col[h]; !ok {
			return result{}, fmt.Errorf("redis-benchmark csv: no column %q in %v", h, recs[0])
		}
	}
	for _, r := range recs[1:] {
		if len(r) != len(recs[0]) || !strings.EqualFold(r[col["test"]], test) {
			continue
		}
		rps, err := strconv.ParseFloat(r[col["rps"]], 64)
		if err != nil || rps <= 0 {
			return result{}, fmt.Errorf("redis-benchmark csv: rps %q", r[col["rps"]])
		}
		p50, err := parseMillis(r[col["p50_latency_ms"]])
		if err != nil {
			return result{}, err
		}
		p99, err := parseMillis(r[col["p99_latency_ms"]])
		if err != nil {
			return result{}, err
		}
		return result{
			Throughput: rps, P50: p50, P99: p99, Ops: float64(requests),
			Elapsed: time.Duration(float64(requests) / rps * float64(time.Second)),
		}, nil
	}
	return result{}, fmt.Errorf("redis-benchmark csv: no row for %s in %q", test, clip(out))
}

func parseMillis(s string) (time.Duration, error) {
	ms, err := strconv.ParseFloat(s, 64)
	if err != nil || ms < 0 {
		return 0, fmt.Errorf("redis-benchmark csv: latency %q", s)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// parseIperf3JSON reads `iperf3 -J` client output: throughput in Gbit/s
// received by the server, Ops in gigabytes (10^9 bytes) received.
func parseIperf3JSON(out []byte) (result, error) {
	var doc struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Seconds       float64 `json:"seconds"`
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return result{}, fmt.Errorf("iperf3 json: %w in %q", err, clip(out))
	}
	if doc.Error != "" {
		return result{}, fmt.Errorf("iperf3: %s", doc.Error)
	}
	s := doc.End.SumReceived
	if s.Bytes <= 0 || s.BitsPerSecond <= 0 || s.Seconds <= 0 {
		return result{}, errors.New("iperf3 json: nothing received")
	}
	return result{
		Throughput: s.BitsPerSecond / 1e9,
		Ops:        s.Bytes / 1e9,
		Elapsed:    time.Duration(s.Seconds * float64(time.Second)),
	}, nil
}

// clip shortens tool output for an error message.
func clip(b []byte) string {
	const max = 400
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = "…" + s[len(s)-max:]
	}
	return s
}
