package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// The HTTP world: nginx on api:80 (declared "http" in the workloads file)
// behind bulkhead-proxy, curl in web, asking for the virtual host apiName,
// which curl resolves to api (--resolve), so requests carry its Host.
const (
	httpPort = 80
	// sniffPort is another port of nginx's that the workloads file does
	// not declare: the proxy must recognise HTTP by its first bytes.
	sniffPort = 8080
	apiName   = "api.example.test"
	// denyBody is bulkhead's 403 body for a request no rule allows.
	denyBody = "bulkhead: request denied by policy (l7_not_allowed)\n"
	// adminBody is what nginx answers on /admin: reaching it is the
	// attack.
	adminBody = "admin console\n"
)

// nginxConf serves, on httpPort and sniffPort, the locations the tests use: /users/<n>, /healthz (a
// chunked response, from the echo module of nginx-light), POST
// /public/form and files under /public/ (bigFile: 1 MiB), and /admin,
// which no rule will allow. The access log names every request that
// reached nginx.
const nginxConf = `load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
user root root;
worker_processes 1;
error_log stderr info;
pid %[1]s/nginx.pid;
events { worker_connections 64; }
http {
    log_format uri '$request_method $request_uri $status';
    access_log %[1]s/access.log uri;
    client_body_temp_path %[1]s/tmp;
    proxy_temp_path %[1]s/tmp;
    fastcgi_temp_path %[1]s/tmp;
    uwsgi_temp_path %[1]s/tmp;
    scgi_temp_path %[1]s/tmp;
    default_type text/plain;
    server {
        listen %[2]s;
        listen %[4]s;
        server_name %[3]s;
        root %[1]s/www;
        location ~ "^/users/([0-9]+)$" { return 200 "user $1\n"; }
        location = /healthz { echo "ok"; }
        location = /public/form { return 200 "form received\n"; }
        location /public/ { }
        location = /admin { return 200 "admin console\n"; }
        location = "/café" { return 200 "menu\n"; }
        location / { return 404 "not found\n"; }
    }
}
`

// startNginx returns a startFunc that runs nginx in the foreground with
// the configuration above in dir.
func startNginx(dir string) startFunc {
	return func(ctx context.Context, h *lab.Host) (*lab.Proc, error) {
		for _, d := range []string{"tmp", "www/public"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				return nil, err
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "www/public/big.bin"), []byte(bigFile), 0o644); err != nil {
			return nil, err
		}
		listen := fmt.Sprintf("%s:%d", h.Addr(), httpPort)
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, listen, apiName, fmt.Sprintf("%s:%d", h.Addr(), sniffPort)), 0o644); err != nil {
			return nil, err
		}
		return h.Start(ctx, "nginx", "-p", dir, "-c", conf, "-e", "stderr", "-g", "daemon off;")
	}
}

// bigFile is served as /public/big.bin: a response of many reads.
var bigFile = strings.Repeat("0123456789abcdef", 1<<16)

// httpEnv is the HTTP world.
type httpEnv struct {
	*serverEnv
	// dir is nginx's: its configuration, files and access log.
	dir string
}

func newHTTPEnv(t *testing.T, ctx context.Context, n int) *httpEnv {
	t.Helper()
	needTools(t, "nginx", "curl")
	dir := t.TempDir()
	return &httpEnv{serverEnv: newServerEnv(t, ctx, n, httpPort, v1alpha1.ProtocolHTTP, startNginx(dir)), dir: dir}
}

// httpReq is one request of the tests' traffic and what nginx answers.
type httpReq struct {
	method, path, data string
	want               httpResult
	// port is httpPort when 0.
	port uint16
}

// httpResult is a response: its status and body.
type httpResult struct {
	code int
	body string
}

// The traffic of discovery: what web does with api, and the rules it must
// teach.
var httpTraffic = []httpReq{
	{method: "GET", path: "/users/1", want: httpResult{200, "user 1\n"}},
	{method: "GET", path: "/users/2", want: httpResult{200, "user 2\n"}},
	{method: "GET", path: "/users/3", want: httpResult{200, "user 3\n"}},
	{method: "GET", path: "/healthz", want: httpResult{200, "ok\n"}},
	{method: "GET", path: "/public/big.bin", want: httpResult{200, bigFile}},
	{method: "POST", path: "/public/form", data: "name=bulkhead", want: httpResult{200, "form received\n"}},
}

func httpLearned() []v1alpha1.Rule {
	rule := func(verb string, paths ...string) v1alpha1.Rule {
		return v1alpha1.Rule{
			Name:   "from-web-http-80-" + strings.ToLower(verb),
			Origin: v1alpha1.OriginLearned,
			Peers:  []v1alpha1.Peer{{Segment: webHost}},
			Ports:  []v1alpha1.PortProtocol{{Port: httpPort, Protocol: v1alpha1.ProtocolHTTP}},
			HTTP:   &v1alpha1.HTTPMatch{Methods: []string{verb}, Paths: paths, Hosts: []string{apiName}},
		}
	}
	return []v1alpha1.Rule{rule("GET", "/healthz", "/public/big.bin", "/users/{id}"), rule("POST", "/public/form")}
}

// httpLearnedYAML is `bulkhead policy export` after discovery: byte for
// byte, the YAML an operator reviews.
const httpLearnedYAML = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata:
  name: api
  namespace: demo
spec:
  ingress:
  - http:
      hosts:
      - api.example.test
      methods:
      - GET
      paths:
      - /healthz
      - /public/big.bin
      - /users/{id}
    name: from-web-http-80-get
    origin: learned
    peers:
    - segment: web
    ports:
    - port: 80
      protocol: http
  - http:
      hosts:
      - api.example.test
      methods:
      - POST
      paths:
      - /public/form
    name: from-web-http-80-post
    origin: learned
    peers:
    - segment: web
    ports:
    - port: 80
      protocol: http
`

// curlMark ends each response's body in curl's output, with its status.
var curlMark = regexp.MustCompile(`<<(\d{3})>>`)

// curl runs curl in web with args (URLs are http://api.example.test…,
// on httpPort or sniffPort),
// one connection for all of them, and returns each URL's response and
// curl's standard error (its -v output).
func (e *httpEnv) curl(t *testing.T, ctx context.Context, args ...string) ([]httpResult, string) {
	t.Helper()
	ip := e.Host(e.Server).Addr()
	base := []string{"-sS", "--path-as-is", "-w", "<<%{http_code}>>",
		"--resolve", fmt.Sprintf("%s:%d:%s", apiName, httpPort, ip), "--resolve", fmt.Sprintf("%s:%d:%s", apiName, sniffPort, ip)}
	out, errOut, code, err := runClient(ctx, e.Host(webHost), "curl", append(base, args...)...)
	if err != nil || code != 0 {
		t.Fatalf("curl %s: exit %d, %v\n%s", strings.Join(args, " "), code, err, errOut)
	}
	var res []httpResult
	for len(out) > 0 {
		m := curlMark.FindStringSubmatchIndex(out)
		if m == nil {
			t.Fatalf("curl %s: output without a status mark: %q", strings.Join(args, " "), out)
		}
		status, _ := strconv.Atoi(out[m[2]:m[3]])
		res = append(res, httpResult{status, out[:m[0]]})
		out = out[m[1]:]
	}
	return res, errOut
}

// request sends r with curl and returns the response.
func (e *httpEnv) request(t *testing.T, ctx context.Context, r httpReq) httpResult {
	t.Helper()
	u := e.url(r.path)
	if r.port != 0 {
		u = fmt.Sprintf("http://%s:%d%s", apiName, r.port, r.path)
	}
	args := []string{"-X", r.method, u}
	if r.data != "" {
		args = append(args, "--data", r.data)
	}
	res, _ := e.curl(t, ctx, args...)
	if len(res) != 1 {
		t.Fatalf("%s %s: %d responses, want 1", r.method, r.path, len(res))
	}
	return res[0]
}

func (e *httpEnv) url(path string) string { return "http://" + apiName + path }

// runTraffic sends the traffic and checks each answer is nginx's.
func (e *httpEnv) runTraffic(t *testing.T, ctx context.Context, what string, traffic []httpReq) {
	t.Helper()
	for _, r := range traffic {
		if got := e.request(t, ctx, r); got != r.want {
			t.Errorf("%s: %s %s = %v, want %v", what, r.method, r.path, got, r.want)
		}
	}
}

// String shows a response with the start of its body.
func (r httpResult) String() string {
	b := r.body
	if len(b) > 80 {
		b = fmt.Sprintf("%s… (%d bytes)", b[:80], len(b))
	}
	return fmt.Sprintf("%d %q", r.code, b)
}

// discoverHTTP runs the discovery traffic in discover mode and waits until
// the control plane has learned exactly the rules it needs; it returns the
// export.
func (e *httpEnv) discoverHTTP(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	e.runTraffic(t, ctx, "discover", httpTraffic)
	return waitIngress(t, ctx, e.serverEnv, httpLearned())
}

// waitIngress polls the export of the server's policy until its ingress
// rules are want (a peer's namespace may be implied), and returns it.
func waitIngress(t *testing.T, ctx context.Context, e *serverEnv, want []v1alpha1.Rule) []byte {
	t.Helper()
	var last []byte
	var diff string
	err := e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
		out, err := e.Client.Export(ctx, e.Namespace)
		if err != nil {
			return false, nil
		}
		last = out
		ps, err := v1alpha1.UnmarshalYAML(out)
		if err != nil {
			return false, fmt.Errorf("the export does not parse: %w\n%s", err, out)
		}
		var got []v1alpha1.Rule
		for _, p := range ps {
			if p.Namespace == e.Namespace && p.Name == e.Server {
				got = p.Spec.Ingress
			}
		}
		for i := range got {
			for j := range got[i].Peers {
				if got[i].Peers[j].Namespace == e.Namespace {
					got[i].Peers[j].Namespace = ""
				}
			}
		}
		diff = cmp.Diff(want, clearProvenance(got))
		return diff == "", nil
	})
	if err != nil {
		t.Fatalf("learned rules: %v (-want +got):\n%s\nexport:\n%s", err, diff, last)
	}
	return last
}

// accessLog is nginx's log of the requests that reached it: "METHOD URI
// STATUS" lines.
func (e *httpEnv) accessLog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkNoAdmin fails when a request for the admin page reached nginx.
func (e *httpEnv) checkNoAdmin(t *testing.T, what string) {
	t.Helper()
	for _, line := range strings.Split(e.accessLog(t), "\n") {
		if strings.Contains(line, "admin") || strings.Contains(line, "%61") {
			t.Errorf("%s: nginx served %q", what, line)
		}
	}
}

// TestHTTP: in discover mode, curl's GETs of /users/1, /users/2, /users/3
// and /healthz and a POST of /public/form become two learned rules, per
// method, with /users/{id} templated and the Host curl sent; the export is
// exactly that YAML. In protect the same requests get nginx's answers
// unchanged, GET /admin gets bulkhead's 403 (nginx never sees it) and the
// connection carries the next request; `bulkhead violations` shows the
// denial as "GET /admin (api.example.test)". In monitor /admin reaches
// nginx and is reported as a violation.
func TestHTTP(t *testing.T) {
	ctx := testCtx(t)
	e := newHTTPEnv(t, ctx, 20)
	exported := e.discoverHTTP(t, ctx)
	// The CLI's export is what an operator reviews: byte for byte.
	out, err := e.CLI(ctx, "policy", "export", "-n", e.Namespace)
	if err != nil {
		t.Fatalf("bulkhead policy export: %v\n%s", err, out)
	}
	t.Logf("bulkhead policy export:\n%s", out)
	checkExport(t, e.Env, out, string(exported), httpLearnedYAML)

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeProtect)
	e.runTraffic(t, ctx, "protect", httpTraffic)

	// /admin denied by bulkhead, then the next request on the same
	// connection answered by nginx.
	res, verbose := e.curl(t, ctx, "-v", e.url("/admin"), e.url("/users/1"))
	want := []httpResult{{403, denyBody}, {200, "user 1\n"}}
	if !slices.Equal(res, want) {
		t.Errorf("GET /admin then /users/1 on one connection: %+v, want %+v", res, want)
	}
	if !strings.Contains(verbose, "Re-using existing connection") {
		t.Errorf("curl opened a second connection after the 403:\n%s", verbose)
	}
	web := e.Host(webHost).Addr().String()
	v := waitViolation(t, ctx, e.Env, "GET /admin denied", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "GET" && r.Resource == "/admin" && r.Verdict == "deny"
	})
	if v.Aux != apiName || v.Mode != "protect" || v.Reason != "l7_not_allowed" || v.Protocol != "http" || v.DstPort != httpPort {
		t.Errorf("the /admin violation: %+v", v)
	}
	table, err := e.CLI(ctx, "violations", "-n", e.Namespace)
	if err != nil || !strings.Contains(table, "GET /admin ("+apiName+")") || !strings.Contains(table, " L7 ") {
		t.Errorf("bulkhead violations does not show the request: %v\n%s", err, table)
	}
	t.Logf("bulkhead violations:\n%s", table)

	// Bodies: a 256 KiB POST that is allowed streams through after nginx's
	// 100 Continue; the same POST to /admin is refused before its body is
	// sent.
	body := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(body, []byte(strings.Repeat("name=bulkhead&", 256<<10/14)), 0o644); err != nil {
		t.Fatal(err)
	}
	expect := []string{"-v", "-H", "Expect: 100-continue", "--data-binary", "@" + body}
	res, verbose = e.curl(t, ctx, append(expect, e.url("/public/form"))...)
	if len(res) != 1 || res[0] != (httpResult{200, "form received\n"}) || !strings.Contains(verbose, "HTTP/1.1 100 Continue") {
		t.Errorf("POST of 256 KiB to /public/form: %v\n%s", res, verbose)
	}
	res, verbose = e.curl(t, ctx, append(expect, e.url("/admin"))...)
	if len(res) != 1 || res[0] != (httpResult{403, denyBody}) {
		t.Errorf("POST of 256 KiB to /admin: %v\n%s", res, verbose)
	}
	e.checkNoAdmin(t, "protect")

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeMonitor)
	if got := e.request(t, ctx, httpReq{method: "GET", path: "/admin"}); got != (httpResult{200, adminBody}) {
		t.Errorf("monitor: GET /admin = %+v, want nginx's admin page", got)
	}
	e.runTraffic(t, ctx, "monitor", httpTraffic)
	waitViolation(t, ctx, e.Env, "GET /admin in monitor", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "GET" && r.Resource == "/admin" && r.Aux == apiName &&
			r.Verdict == "violation" && r.Mode == "monitor"
	})
	recs, err := violations(ctx, e.Env)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Resource != "/admin" {
			t.Errorf("a violation other than /admin: %+v", r)
		}
	}
	// nginx logs a request once its response is out: poll.
	err = e.Poll(ctx, 5*time.Second, func(context.Context) (bool, error) {
		return strings.Contains(e.accessLog(t), "GET /admin 200"), nil
	})
	if err != nil {
		t.Errorf("monitor: nginx did not serve /admin: %v\n%s", err, e.accessLog(t))
	}
	e.serverAlive(t)
}

// TestHTTPSniffed: on a port the workloads file does not declare (8080),
// the proxy recognises HTTP by curl's first bytes. Discover learns the HTTP
// rule of that port and no other: the connection's own flow names the
// protocol sniffed (a "tcp" one would teach an L4 rule that allows every
// message on the port). Protect then enforces it.
func TestHTTPSniffed(t *testing.T) {
	ctx := testCtx(t)
	e := newHTTPEnv(t, ctx, 23)
	sniffed := []httpReq{
		{method: "GET", path: "/users/1", want: httpResult{200, "user 1\n"}, port: sniffPort},
		{method: "GET", path: "/users/2", want: httpResult{200, "user 2\n"}, port: sniffPort},
	}
	e.runTraffic(t, ctx, "discover", sniffed)
	waitIngress(t, ctx, e.serverEnv, []v1alpha1.Rule{{
		Name:   "from-web-http-8080-get",
		Origin: v1alpha1.OriginLearned,
		Peers:  []v1alpha1.Peer{{Segment: webHost}},
		Ports:  []v1alpha1.PortProtocol{{Port: sniffPort, Protocol: v1alpha1.ProtocolHTTP}},
		HTTP:   &v1alpha1.HTTPMatch{Methods: []string{"GET"}, Paths: []string{"/users/{id}"}, Hosts: []string{apiName}},
	}})

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeProtect)
	e.runTraffic(t, ctx, "protect", append(sniffed, httpReq{method: "GET", path: "/users/3", want: httpResult{200, "user 3\n"}, port: sniffPort}))
	if got := e.request(t, ctx, httpReq{method: "GET", path: "/admin", port: sniffPort}); got != (httpResult{403, denyBody}) {
		t.Errorf("protect: GET /admin on the sniffed port = %v, want bulkhead's 403", got)
	}
	web := e.Host(webHost).Addr().String()
	waitViolation(t, ctx, e.Env, "GET /admin on the sniffed port", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.DstPort == sniffPort && r.Protocol == "http" && r.Resource == "/admin" && r.Verdict == "deny"
	})
	e.checkNoAdmin(t, "protect")
	e.serverAlive(t)
}

// TestHTTPEvasion: in protect mode, /admin reached by another spelling is
// denied like /admin (the path is normalised before matching), a request
// carrying both Content-Length and Transfer-Encoding closes its connection
// with a "malformed" violation, a request line sent one byte per TCP
// segment is still judged, and a lower-case method is judged like the
// upper-case one (nginx then refuses it). None of it reaches nginx's
// /admin.
func TestHTTPEvasion(t *testing.T) {
	ctx := testCtx(t)
	e := newHTTPEnv(t, ctx, 21)
	e.discoverHTTP(t, ctx)
	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeProtect)
	web := e.Host(webHost)

	t.Run("other spellings of /admin", func(t *testing.T) {
		spellings := []string{"/%61dmin", "/./admin", "//admin", "/public/../admin", "/admin;x=1", "/users/../admin?q=1"}
		urls := make([]string, 0, len(spellings)+1)
		for _, p := range spellings {
			urls = append(urls, e.url(p))
		}
		// And an allowed request after them, on the same connection.
		res, verbose := e.curl(t, ctx, append([]string{"-v"}, append(urls, e.url("/users/2"))...)...)
		if len(res) != len(spellings)+1 {
			t.Fatalf("%d responses, want %d", len(res), len(spellings)+1)
		}
		for i, p := range spellings {
			if res[i] != (httpResult{403, denyBody}) {
				t.Errorf("GET %s = %d %q, want bulkhead's 403", p, res[i].code, res[i].body)
			}
		}
		if last := res[len(spellings)]; last != (httpResult{200, "user 2\n"}) {
			t.Errorf("GET /users/2 after them = %+v", last)
		}
		if n := strings.Count(verbose, "Re-using existing connection"); n != len(spellings) {
			t.Errorf("curl reused its connection %d times, want %d:\n%s", n, len(spellings), verbose)
		}
		// Each is reported as the path nginx would have served. (The
		// violations are listed per report: they may be in several
		// records.)
		src := web.Addr().String()
		var n uint64
		err := e.Poll(ctx, 15*time.Second, func(ctx context.Context) (bool, error) {
			recs, err := violations(ctx, e.Env)
			if err != nil {
				return false, nil
			}
			n = 0
			for _, r := range recs {
				if r.SrcIP == src && r.Verb == "GET" && r.Resource == "/admin" && r.Verdict == "deny" {
					n += r.Count
				}
			}
			return n >= uint64(len(spellings)), nil
		})
		if err != nil {
			t.Errorf("violations GET /admin: %d, want %d: %v", n, len(spellings), err)
		}
	})

	t.Run("pipelined, with a request in a denied body", func(t *testing.T) {
		// A denied request's body is dropped with it, whatever it looks
		// like; the replies keep their order.
		inner := "GET /admin HTTP/1.1\r\nHost: " + apiName + "\r\n\r\n"
		chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(inner), inner)
		batch := "GET /users/1 HTTP/1.1\r\nHost: " + apiName + "\r\n\r\n" +
			"POST /admin HTTP/1.1\r\nHost: " + apiName + "\r\nContent-Length: " + strconv.Itoa(len(inner)) + "\r\n\r\n" + inner +
			"GET /users/2 HTTP/1.1\r\nHost: " + apiName + "\r\n\r\n" +
			"POST /admin HTTP/1.1\r\nHost: " + apiName + "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked +
			"GET http://" + apiName + "/admin HTTP/1.1\r\nHost: " + apiName + "\r\n\r\n" +
			"HEAD /admin HTTP/1.1\r\nHost: " + apiName + "\r\n\r\n" +
			"GET /users/3 HTTP/1.1\r\nHost: API.Example.TEST:80\r\n\r\n"
		c := dialRaw(t, ctx, web, e.ServerAddr())
		if err := c.send([]byte(batch)); err != nil {
			t.Fatal(err)
		}
		for i, want := range []struct {
			method string
			httpResult
		}{
			{"GET", httpResult{200, "user 1\n"}},
			{"POST", httpResult{403, denyBody}},
			{"GET", httpResult{200, "user 2\n"}},
			{"POST", httpResult{403, denyBody}},
			{"GET", httpResult{403, denyBody}}, // absolute form
			{"HEAD", httpResult{403, ""}},      // no body after a HEAD
			{"GET", httpResult{200, "user 3\n"}},
		} {
			if got, err := c.httpResponse(want.method); err != nil || got != want.httpResult {
				t.Errorf("response %d = %v, %v; want %v", i+1, got, err, want.httpResult)
			}
		}
		if err := c.silent(200 * time.Millisecond); err != nil {
			t.Errorf("after the responses: %v", err)
		}
	})

	t.Run("CL and TE", func(t *testing.T) {
		c := dialRaw(t, ctx, web, e.ServerAddr())
		smuggle := "POST /public/form HTTP/1.1\r\nHost: " + apiName + "\r\nContent-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: " + apiName + "\r\n\r\n"
		if err := c.send([]byte(smuggle)); err != nil {
			t.Fatal(err)
		}
		if err := c.closedByPeer(5 * time.Second); err != nil {
			t.Error(err)
		}
		src := web.Addr().String()
		v := waitViolation(t, ctx, e.Env, "malformed", func(r cli.FlowRecord) bool {
			return r.SrcIP == src && r.Reason == "malformed"
		})
		if v.Verdict != "deny" || v.Protocol != "http" {
			t.Errorf("the malformed violation: %+v", v)
		}
		// The proxy lives on: a new connection works.
		e.runTraffic(t, ctx, "after the smuggling attempt", httpTraffic[:1])
	})

	t.Run("one byte per segment", func(t *testing.T) {
		c := dialRaw(t, ctx, web, e.ServerAddr())
		for _, r := range []struct {
			path string
			want httpResult
		}{
			{"/admin", httpResult{403, denyBody}},
			{"/users/7", httpResult{200, "user 7\n"}},
		} {
			req := "GET " + r.path + " HTTP/1.1\r\nHost: " + apiName + "\r\n\r\n"
			if err := c.sendBytewise([]byte(req), time.Millisecond); err != nil {
				t.Fatal(err)
			}
			got, err := c.httpResponse("GET")
			if err != nil || got != r.want {
				t.Errorf("GET %s a byte at a time = %+v, %v; want %+v", r.path, got, err, r.want)
			}
		}
	})

	t.Run("method case", func(t *testing.T) {
		// Methods are judged case-insensitively: "get" is allowed where
		// GET is, and nginx, like most servers, refuses it (400); an
		// unlisted path is denied in any case.
		c := dialRaw(t, ctx, web, e.ServerAddr())
		if err := c.send([]byte("get /admin HTTP/1.1\r\nHost: " + apiName + "\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		if got, err := c.httpResponse("GET"); err != nil || got != (httpResult{403, denyBody}) {
			t.Errorf("get /admin = %+v, %v; want bulkhead's 403", got, err)
		}
		if err := c.send([]byte("get /users/1 HTTP/1.1\r\nHost: " + apiName + "\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		if got, err := c.httpResponse("GET"); err != nil || got.code != 400 {
			t.Errorf("get /users/1 = %+v, %v; want nginx's 400", got, err)
		}
	})

	t.Run("rule paths in any spelling", func(t *testing.T) {
		// A person writes paths as they think of them; the compiler
		// brings them to the parser's normal form (decoded, dot-segments
		// resolved, the rest %XX in upper case), or they would never
		// match.
		const name = "from-web-user"
		out, err := e.Client.Export(ctx, e.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := v1alpha1.UnmarshalYAML(out)
		if err != nil || len(ps) != 1 {
			t.Fatalf("export: %v\n%s", err, out)
		}
		ps[0].Spec.Ingress = append(ps[0].Spec.Ingress, v1alpha1.Rule{
			Name:   name,
			Origin: v1alpha1.OriginUser,
			Peers:  []v1alpha1.Peer{{Segment: webHost}},
			Ports:  []v1alpha1.PortProtocol{{Port: httpPort, Protocol: v1alpha1.ProtocolHTTP}},
			HTTP:   &v1alpha1.HTTPMatch{Methods: []string{"GET"}, Paths: []string{"/café", "/docs/./%7e/*"}},
		})
		b, err := v1alpha1.MarshalYAML(ps)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := e.CLI(ctx, "policy", "apply", "-f", file); err != nil {
			t.Fatalf("bulkhead policy apply: %v\n%s", err, out)
		}
		if _, err := e.WaitProxyMode(ctx, v1alpha1.ModeProtect, name); err != nil {
			t.Fatal(err)
		}
		for _, r := range []httpReq{
			{method: "GET", path: "/caf%C3%A9", want: httpResult{200, "menu\n"}},
			{method: "GET", path: "/caf%c3%a9", want: httpResult{200, "menu\n"}},
			{method: "GET", path: "/docs/~/a", want: httpResult{404, "not found\n"}},   // past bulkhead
			{method: "GET", path: "/docs/%7E/b", want: httpResult{404, "not found\n"}}, // past bulkhead
			{method: "GET", path: "/docs/a", want: httpResult{403, denyBody}},
		} {
			if got := e.request(t, ctx, r); got != r.want {
				t.Errorf("%s %s = %v, want %v", r.method, r.path, got, r.want)
			}
		}
	})

	e.checkNoAdmin(t, "evasion")
	e.serverAlive(t)
}

// httpResponse reads one response to a request with method from c.
func (c *rawConn) httpResponse(method string) (httpResult, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		return httpResult{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	return httpResult{resp.StatusCode, string(body)}, err
}
