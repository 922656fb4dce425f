package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-io/bulkhead/test/lab"
)

// The HTTP/1.1 scenario's server and policy.
const (
	httpPort = 8080
	// httpPath is what the load tools GET (allowed); deniedPath a path
	// every policy denies (nginx serves it too, so a 403 is the proxy's).
	httpPath   = "/bench"
	deniedPath = "/admin"
	// httpBody is the size of every response body nginx serves.
	httpBody = 1024
	// httpConns is the connections of both load tools.
	httpConns = 16
	// fortioModule is the load generator, built with `go install` into
	// the run's directory. Later versions need grol.io/grol, which the
	// module proxy here does not serve.
	fortioModule = "fortio.org/fortio@v1.66.5"
)

// nginxConfig serves dir's files (1 KiB each) on httpPort: one worker,
// no access log, keep-alive for as long as the load tools want it.
func nginxConfig(dir string) string {
	return nginxConf(dir, fmt.Sprintf(`    keepalive_requests 100000000;
    keepalive_timeout 1h;
    default_type application/octet-stream;
    server {
        listen %[2]d;
        root %[1]s/www;
    }
`, dir, httpPort))
}

// nginxConf is the configuration of an nginx whose prefix directory is
// dir (pid, error log, temporary files there; one worker, no access log)
// with http's directives in its http block.
func nginxConf(dir, http string) string {
	return fmt.Sprintf(`worker_processes 1;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp;
    proxy_temp_path %[1]s/tmp;
    fastcgi_temp_path %[1]s/tmp;
    uwsgi_temp_path %[1]s/tmp;
    scgi_temp_path %[1]s/tmp;
%[2]s}
`, dir, http)
}

// startNginx writes nginx's prefix directory (config, the 1 KiB files of
// httpPath and deniedPath) and starts it in the server, pinned to the load
// CPU.
func (b *bench) startNginx(ctx context.Context) (*lab.Proc, error) {
	dir := filepath.Join(b.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		return nil, fmt.Errorf("harness: nginx: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("harness: nginx: %w", err)
	}
	body := []byte(strings.Repeat("x", httpBody-1) + "\n")
	for _, p := range []string{httpPath, deniedPath} {
		if err := os.WriteFile(filepath.Join(dir, "www", p), body, 0o644); err != nil {
			return nil, fmt.Errorf("harness: nginx: %w", err)
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConfig(dir)), 0o644); err != nil {
		return nil, fmt.Errorf("harness: nginx: %w", err)
	}
	return b.server.Start(ctx, "nice", b.pinned(loadCPU, "nginx", "-p", dir, "-c", conf, "-g", "daemon off;")...)
}

// buildFortio builds fortio into dir and returns its path.
func buildFortio(ctx context.Context, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, toolLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", fortioModule)
	cmd.Dir = dir // outside the bulkhead module: its go.mod stays as it is
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: go install %s: %w\n%s", fortioModule, err, clip(out))
	}
	return filepath.Join(dir, "fortio"), nil
}

// haproxyHTTPConfig is HAProxy in HTTP mode, one thread, with ACLs
// equivalent to the Bulkhead policy: GET on httpPath passes, anything else
// gets 403 from HAProxy. Keep-alive on both sides.
func haproxyHTTPConfig(backend netip.AddrPort, maxconn int) string {
	return fmt.Sprintf(`global
    nbthread 1
    maxconn %d

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout http-keep-alive 1h

frontend bench
    bind :%d
    acl bench_get method GET
    acl bench_path path %s
    http-request deny deny_status 403 unless bench_get bench_path
    default_backend server

backend server
    http-reuse always
    server s1 %s
`, maxconn, proxyPort, httpPath, backend)
}

// clientGet sends one GET of path to the server's HTTP port from the client
// (through the redirect when a proxy is on) and returns the status and
// body.
func (b *bench) clientGet(ctx context.Context, path string) (int, []byte, error) {
	tr := &http.Transport{DialContext: b.client.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.target(httpPort).String()+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// checkHTTPPolicy proves an arm serves the benchmark's GET (200, the 1 KiB
// body) and, for the proxies, denies deniedPath itself (403; nginx would
// serve it).
func (b *bench) checkHTTPPolicy(ctx context.Context, arm Arm) error {
	code, body, err := b.clientGet(ctx, httpPath)
	if err != nil || code != http.StatusOK || len(body) != httpBody {
		return fmt.Errorf("GET %s through %s: status %d, %d bytes, %v; want 200 and %d bytes", httpPath, arm, code, len(body), err, httpBody)
	}
	want := http.StatusOK
	if arm != Direct {
		want = http.StatusForbidden
	}
	code, body, err = b.clientGet(ctx, deniedPath)
	if err != nil || code != want {
		return fmt.Errorf("GET %s through %s: status %d, %v; want %d", deniedPath, arm, code, err, want)
	}
	if arm == Bulkhead && !strings.Contains(string(body), "bulkhead") {
		return fmt.Errorf("GET %s through Bulkhead: 403 not from the proxy: %q", deniedPath, clip(body))
	}
	return nil
}

func (b *bench) httpURL() string { return "http://" + b.target(httpPort).String() + httpPath }

// wrk runs wrk at full speed: one thread, httpConns connections.
func (b *bench) wrk(ctx context.Context) (result, error) {
	out, err := b.tool(ctx, "wrk", "-t", "1", "-c", strconv.Itoa(httpConns),
		"-d", strconv.Itoa(int(b.prof.HTTPTime/time.Second))+"s", "--latency", b.httpURL())
	if err != nil {
		return result{}, err
	}
	return parseWrk(out)
}

// fortioLoad runs fortio at a fixed rate: the profile's HTTPRate, else
// half of what the Bulkhead arm reached under wrk in this run.
func (b *bench) fortioLoad(ctx context.Context) (result, error) {
	qps := b.httpRate()
	if qps <= 0 {
		return result{}, errors.New("no rate for fortio: set the profile's HTTPRate or run the wrk scenario first")
	}
	path := filepath.Join(b.dir, "fortio.json")
	_, err := b.tool(ctx, b.fortio, "load", "-quiet", "-qps", strconv.Itoa(qps), "-c", strconv.Itoa(httpConns),
		"-t", b.prof.HTTPTime.String(), "-r", "0.000001", "-p", "50,90,99", "-json", path, b.httpURL())
	if err != nil {
		return result{}, err
	}
	out, err := os.ReadFile(path)
	if err != nil {
		return result{}, fmt.Errorf("fortio json: %w", err)
	}
	return parseFortioJSON(out)
}

// httpRate is fortio's rate in requests per second: the profile's, or
// half the median of the Bulkhead arm's wrk throughput, rounded down to
// 100.
func (b *bench) httpRate() int {
	if b.prof.HTTPRate > 0 {
		return b.prof.HTTPRate
	}
	if r := b.rep.row(httpMaxScenario, Bulkhead); r != nil {
		return int(r.med().Throughput/2) / 100 * 100
	}
	return 0
}

// parseFortioJSON reads the result file of `fortio load -json`: the
// requests that got 200 (any other code, or a connection error, fails the
// run), the achieved rate and the p50, p90 and p99 latencies.
func parseFortioJSON(out []byte) (result, error) {
	var doc struct {
		ActualQPS         float64
		ActualDuration    int64 // ns
		RetCodes          map[string]int64
		DurationHistogram struct {
			Count       int64
			Percentiles []struct {
				Percentile float64
				Value      float64 // seconds
			}
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return result{}, fmt.Errorf("fortio json: %w in %q", err, clip(out))
	}
	ok := doc.RetCodes["200"]
	if ok <= 0 || ok != doc.DurationHistogram.Count || doc.ActualQPS <= 0 {
		return result{}, fmt.Errorf("fortio: %d requests, return codes %v: want every one 200", doc.DurationHistogram.Count, doc.RetCodes)
	}
	r := result{Throughput: doc.ActualQPS, Ops: float64(ok), Elapsed: time.Duration(doc.ActualDuration)}
	for _, p := range doc.DurationHistogram.Percentiles {
		d := time.Duration(p.Value * float64(time.Second))
		switch p.Percentile {
		case 50:
			r.P50 = d
		case 90:
			r.P90 = d
		case 99:
			r.P99 = d
		}
	}
	if r.P50 <= 0 || r.P90 < r.P50 || r.P99 < r.P90 {
		return result{}, fmt.Errorf("fortio: percentiles %+v", doc.DurationHistogram.Percentiles)
	}
	return r, nil
}

var (
	wrkTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m)\b`)
	wrkRate    = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	wrkPercent = regexp.MustCompile(`(?m)^\s*(50|90|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkBad     = regexp.MustCompile(`(?m)^\s*(Non-2xx or 3xx responses|Socket errors):.*$`)
)

// parseWrk reads wrk's --latency output: requests, requests/s and the 50,
// 90 and 99 percentiles. Non-2xx responses or socket errors fail the run.
func parseWrk(out []byte) (result, error) {
	s := string(out)
	if m := wrkBad.FindString(s); m != "" {
		return result{}, fmt.Errorf("wrk: %s", strings.TrimSpace(m))
	}
	t := wrkTotal.FindStringSubmatch(s)
	q := wrkRate.FindStringSubmatch(s)
	if t == nil || q == nil {
		return result{}, fmt.Errorf("wrk: no totals in %q", clip(out))
	}
	n, _ := strconv.ParseFloat(t[1], 64)
	el, err := wrkDuration(t[2], t[3])
	if err != nil {
		return result{}, err
	}
	rps, err := strconv.ParseFloat(q[1], 64)
	if err != nil || n <= 0 || rps <= 0 {
		return result{}, fmt.Errorf("wrk: %s requests at %s/s", t[1], q[1])
	}
	r := result{Throughput: rps, Ops: n, Elapsed: el}
	for _, m := range wrkPercent.FindAllStringSubmatch(s, -1) {
		d, err := wrkDuration(m[2], m[3])
		if err != nil {
			return result{}, err
		}
		switch m[1] {
		case "50":
			r.P50 = d
		case "90":
			r.P90 = d
		case "99":
			r.P99 = d
		}
	}
	if r.P50 <= 0 || r.P99 <= 0 {
		return result{}, fmt.Errorf("wrk: no latency distribution in %q", clip(out))
	}
	return r, nil
}

func wrkDuration(v, unit string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("wrk: duration %q", v+unit)
	}
	mult := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[unit]
	return time.Duration(f * float64(mult)), nil
}
