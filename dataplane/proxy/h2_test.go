//lint:file-ignore SA1019 the h2c upgrade (Upgrade: h2c) is served only by golang.org/x/net/http2/h2c; net/http has prior knowledge alone.

package proxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
	"github.com/bulkhead-io/bulkhead/dataplane/proxy"
	h2p "github.com/bulkhead-io/bulkhead/protocols/http2"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// calls records the handlers a test server ran.
type calls struct {
	mu    sync.Mutex
	names []string
}

func (c *calls) add(name string) {
	c.mu.Lock()
	c.names = append(c.names, name)
	c.mu.Unlock()
}

func (c *calls) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.names {
		if s == name {
			n++
		}
	}
	return n
}

// h2Policy allows demo/cart the requests of rules (verb, exact path or
// prefix ending in "/") on port.
func h2Policy(port uint16, rules ...[2]string) policyFn {
	return func(t testing.TB, _ netip.AddrPort) *enforce.Policy {
		var l7r []*bulkheadv1.L7Rule
		for _, r := range rules {
			p := &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Exact{Exact: r[1]}}
			if strings.HasSuffix(r[1], "/") {
				p = &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Prefix{Prefix: r[1]}}
			}
			l7r = append(l7r, &bulkheadv1.L7Rule{Verbs: []string{r[0]}, Resources: []*bulkheadv1.Pattern{p}})
		}
		pp := &bulkheadv1.ProxyPolicy{
			Segment: "api", Namespace: "demo", Mode: bulkheadv1.Mode_MODE_PROTECT,
			Ingress: []*bulkheadv1.Rule{{
				Name:  "demo/api/from-cart",
				Peers: []*bulkheadv1.Peer{{Peer: &bulkheadv1.Peer_Segment{Segment: "demo/cart"}}},
				Ports: []*bulkheadv1.Port{{Port: uint32(port), Protocol: h2p.Name}},
				L7:    l7r,
			}},
			Ports:    []*bulkheadv1.Port{{Port: uint32(port), Protocol: h2p.Name}},
			Revision: "test",
		}
		ids := []*bulkheadv1.Identity{{Workload: "cart", Namespace: "demo", Segment: "demo/cart", Ips: []string{cartIP.String()}}}
		pol, err := enforce.Compile(pp, ids)
		if err != nil {
			t.Fatalf("compile policy: %v", err)
		}
		return pol
	}
}

func withHTTP2(c *proxy.Config) { c.Protocols = []l7.Protocol{h2p.Protocol()} }

// startGRPC runs a real gRPC-Go server with the health service, recording
// the handlers it runs.
func startGRPC(t *testing.T) (netip.AddrPort, *health.Server, *calls) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &calls{}
	s := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			c.add(info.FullMethod)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			c.add(info.FullMethod)
			return h(srv, ss)
		}))
	hs := health.NewServer()
	hs.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return ln.Addr().(*net.TCPAddr).AddrPort(), hs, c
}

// grpcClient connects a gRPC-Go client to the proxy from cartIP.
func grpcClient(t *testing.T, h *harness) healthpb.HealthClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+h.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: cartIP.AsSlice()}}
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return healthpb.NewHealthClient(cc)
}

const (
	methodCheck = "/grpc.health.v1.Health/Check"
	methodWatch = "/grpc.health.v1.Health/Watch"
	methodList  = "/grpc.health.v1.Health/List"
)

// TestH2GRPCDenyStream: through the proxy, a real gRPC-Go client calls a
// real gRPC-Go server on one connection. The first call is a denied
// method (List): the client gets PERMISSION_DENIED with bulkhead's
// message and the server's handler never runs; the allowed calls that
// follow reuse the header fields the denied one indexed (HPACK stays in
// step). A Watch stream opened before a second denied List keeps
// receiving updates after it.
func TestH2GRPCDenyStream(t *testing.T) {
	srv, hs, c := startGRPC(t)
	h := newHarnessAt(t, srv, h2Policy(srv.Port(), [2]string{"POST", methodCheck}, [2]string{"POST", methodWatch}), withHTTP2)
	cl := grpcClient(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := cl.List(ctx, &healthpb.HealthListRequest{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "bulkhead: denied by policy") {
		t.Fatalf("List: %v, want PermissionDenied from bulkhead", err)
	}
	for i := range 5 {
		r, err := cl.Check(ctx, &healthpb.HealthCheckRequest{Service: "api"})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check %d after the denied List: %v, %v", i, r, err)
		}
	}

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w, err := cl.Watch(wctx, &healthpb.HealthCheckRequest{Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch: %v, %v", r, err)
	}
	if _, err := cl.List(ctx, &healthpb.HealthListRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("second List: %v", err)
	}
	hs.SetServingStatus("api", healthpb.HealthCheckResponse_NOT_SERVING)
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after the denied List: %v, %v", r, err)
	}
	if _, err := cl.Check(ctx, &healthpb.HealthCheckRequest{Service: "api"}); err != nil {
		t.Fatalf("Check after the second List: %v", err)
	}
	wcancel()
	if n := c.count(methodList); n != 0 {
		t.Errorf("the List handler ran %d times", n)
	}
	if n := c.count(methodCheck); n != 6 {
		t.Errorf("the Check handler ran %d times, want 6", n)
	}
	if got := h.counter("bulkhead_proxy_denials_total", "protocol", "http2", "reason", "l7_not_allowed"); got != 2 {
		t.Errorf("denied messages: %v, want 2", got)
	}
}

// startH2C runs a Go h2c server (golang.org/x/net/http2/h2c) whose
// handler records the paths it serves and reads the request body.
func startH2C(t *testing.T) (netip.AddrPort, *calls) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &calls{}
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.add(r.Method + " " + r.URL.Path)
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %d\n", r.URL.Path, n)
	})
	s := &http.Server{Handler: h2c.NewHandler(mux, &http2.Server{}), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return ln.Addr().(*net.TCPAddr).AddrPort(), c
}

// h2cClient is a Go HTTP/2 client with prior knowledge, from cartIP.
func h2cClient(t *testing.T) *http.Client {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: cartIP.AsSlice()}}
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func h2Do(t *testing.T, cl *http.Client, method, url string, body io.Reader, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// TestH2CDenyStream: a Go HTTP/2 client (prior knowledge) and a Go h2c
// server through the proxy, on one connection. The first request is
// denied and carries header fields the client's encoder indexes; the
// allowed requests after it reuse them (the server would fail to decode
// them if the proxy had dropped the denied block). A denied 200 KiB upload
// (more than the 64 KiB connection window) is dropped and its window given
// back: allowed uploads after it go through. No denied request reaches a
// handler.
func TestH2CDenyStream(t *testing.T) {
	srv, c := startH2C(t)
	h := newHarnessAt(t, srv, h2Policy(srv.Port(), [2]string{"GET", "/public/"}, [2]string{"POST", "/public/"}), withHTTP2)
	cl := h2cClient(t)
	base := "http://" + h.addr
	hdr := map[string]string{"X-Custom-Token": strings.Repeat("t", 40), "X-Trace": "abc"}
	const denied = "bulkhead: request denied by policy (l7_not_allowed)\n"
	if code, body := h2Do(t, cl, "GET", base+"/admin", nil, hdr); code != 403 || body != denied {
		t.Fatalf("GET /admin: %d %q", code, body)
	}
	for i := range 3 {
		if code, body := h2Do(t, cl, "GET", base+"/public/a", nil, hdr); code != 200 || body != "/public/a 0\n" {
			t.Fatalf("GET /public/a %d: %d %q", i, code, body)
		}
	}
	if code, _ := h2Do(t, cl, "GET", base+"/%61dmin", nil, nil); code != 403 {
		t.Fatalf("GET /%%61dmin: %d", code)
	}
	big := strings.Repeat("x", 200<<10)
	if code, body := h2Do(t, cl, "POST", base+"/admin", strings.NewReader(big), hdr); code != 403 || body != denied {
		t.Fatalf("POST /admin (200 KiB): %d %q", code, body)
	}
	for i := range 3 {
		if code, body := h2Do(t, cl, "POST", base+"/public/up", strings.NewReader(big), hdr); code != 200 || body != fmt.Sprintf("/public/up %d\n", len(big)) {
			t.Fatalf("POST /public/up %d: %d %q", i, code, body)
		}
	}
	if n := c.count("GET /admin") + c.count("POST /admin"); n != 0 {
		t.Errorf("a denied request reached the handler %d times", n)
	}
	if n := c.count("POST /public/up"); n != 3 {
		t.Errorf("uploads served: %d, want 3", n)
	}
}

// TestH2FlowCredit: a raw HTTP/2 client (golang.org/x/net/http2's Framer)
// sends a denied POST with padded DATA frames; the proxy answers 403,
// drops the DATA, and gives the client back exactly the connection window
// that DATA used (padding included) in WINDOW_UPDATE frames on stream 0.
// An allowed request on the same connection is served after it.
func TestH2FlowCredit(t *testing.T) {
	srv, c := startH2C(t)
	h := newHarnessAt(t, srv, h2Policy(srv.Port(), [2]string{"GET", "/public/"}), withHTTP2)
	conn := h.dial(netip.Addr{})
	fr := http2.NewFramer(conn, conn)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func(method, path string) []byte {
		hb.Reset()
		for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":path", path}, {":authority", "api"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		return bytes.Clone(hb.Bytes())
	}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// The server's preface and its own window updates come first.
	serverCredit := uint32(0)
	for settings := false; !settings; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		settings = f.Header().Type == http2.FrameSettings && !f.Header().Flags.Has(http2.FlagSettingsAck)
	}
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		if wu, ok := f.(*http2.WindowUpdateFrame); ok && wu.StreamID == 0 {
			serverCredit += wu.Increment
		}
	}
	_ = fr.WriteSettingsAck()
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("POST", "/admin"), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	want := uint32(0)
	for i := range 4 {
		pad := make([]byte, 100)
		if err := fr.WriteDataPadded(1, i == 3, make([]byte, 10000), pad); err != nil {
			t.Fatal(err)
		}
		want += 10000 + 1 + 100
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got uint32
	var status403 bool
	dec := hpack.NewDecoder(4096, nil)
	for got < want || !status403 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("credit %d of %d, 403 %v: %v", got, want, status403, err)
		}
		switch f := f.(type) {
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				got += f.Increment
			}
		case *http2.HeadersFrame:
			fs, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil || f.StreamID != 1 || len(fs) == 0 || fs[0].Value != "403" {
				t.Fatalf("HEADERS on %d: %v %v", f.StreamID, fs, err)
			}
			status403 = true
		case *http2.RSTStreamFrame:
			t.Fatalf("RST_STREAM on stream %d reached the client", f.StreamID)
		}
	}
	if got != want {
		t.Errorf("window credit %d, want %d (server's own: %d)", got, want, serverCredit)
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block("GET", "/public/x"), EndHeaders: true, EndStream: true}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for stream 3: %v", err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 3 {
			if string(d.Data()) != "/public/x 0\n" {
				t.Errorf("stream 3: %q", d.Data())
			}
			break
		}
	}
	if n := c.count("POST /admin"); n != 0 {
		t.Errorf("the denied POST reached the handler")
	}
}

// curlH2 runs curl (from Debian's curl, with nghttp2) with args and
// returns its standard output and error.
func curlH2(t *testing.T, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "-w", "<<%{http_code}>>\n"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String()
}

// TestH2Curl: curl with prior knowledge and with the HTTP/1.1 upgrade
// (--http2), through the proxy to a Go h2c server: allowed paths are
// served; /admin gets bulkhead's 403 with its body, as HTTP/1.1 when it is
// the upgrade request itself and as an HTTP/2 stream when it follows an
// upgrade on the same connection; the handler never sees /admin.
func TestH2Curl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("needs curl (apt-get install curl): %v", err)
	}
	srv, c := startH2C(t)
	h := newHarnessAt(t, srv, h2Policy(srv.Port(), [2]string{"GET", "/public/"}, [2]string{"POST", "/public/"}), withHTTP2)
	base := "http://" + h.addr
	const denied = "bulkhead: request denied by policy (l7_not_allowed)\n"
	for _, tc := range []struct {
		name string
		args []string
		want string
		// proto is the HTTP version curl must report for the last
		// response.
		proto string
	}{
		{"prior knowledge allowed", []string{"--http2-prior-knowledge", base + "/public/a"}, "/public/a 0\n<<200>>\n", "HTTP/2 200"},
		{"prior knowledge denied", []string{"--http2-prior-knowledge", base + "/admin"}, denied + "<<403>>\n", "HTTP/2 403"},
		{"upgrade allowed", []string{"--http2", "-d", "name=bulkhead", base + "/public/form"}, "/public/form 13\n<<200>>\n", "HTTP/2 200"},
		{"upgrade then denied stream", []string{"--http2", base + "/public/b", base + "/admin"}, "/public/b 0\n<<200>>\n" + denied + "<<403>>\n", "HTTP/2 403"},
		{"upgrade request denied", []string{"--http2", base + "/admin"}, denied + "<<403>>\n", "HTTP/1.1 403"},
		{"upgrade denied then allowed", []string{"--http2", base + "/admin", base + "/public/c"}, denied + "<<403>>\n/public/c 0\n<<200>>\n", "HTTP/2 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, verbose := curlH2(t, append([]string{"-v"}, tc.args...)...)
			if out != tc.want {
				t.Errorf("output %q, want %q\n%s", out, tc.want, verbose)
			}
			if i := strings.LastIndex(verbose, "< HTTP/"); i < 0 || !strings.HasPrefix(verbose[i+2:], tc.proto) {
				t.Errorf("last response is not %q:\n%s", tc.proto, verbose)
			}
		})
	}
	if n := c.count("GET /admin"); n != 0 {
		t.Errorf("/admin reached the handler %d times", n)
	}
}
