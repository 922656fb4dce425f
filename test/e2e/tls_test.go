package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// The TLS world: `openssl s_server -www` on api:443 (declared "tls" in the
// workloads file) behind bulkhead-proxy with a certificate for apiName made
// by the test; curl, openssl s_client and Go's crypto/tls in web. Bulkhead
// does not terminate TLS: it judges the ClientHello's server name (SNI).
const (
	tlsPort = 443
	// otherName is a name no rule allows, served by the same server.
	otherName = "other.example.test"
	// pageMark is in the page s_server -www answers GET / with.
	pageMark = "s_server -accept"
	// alertText is how OpenSSL (s_client, curl) reports the alert
	// bulkhead sends, access_denied.
	alertText = "alert access denied"
)

// startSServer returns a startFunc that makes a self-signed certificate for
// apiName in dir and runs openssl s_server -www with it.
func startSServer(dir string) startFunc {
	return func(ctx context.Context, h *lab.Host) (*lab.Proc, error) {
		cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		out, err := exec.CommandContext(ctx, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
			"-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN="+apiName,
			"-addext", "subjectAltName=DNS:"+apiName).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("openssl req: %w\n%s", err, out)
		}
		return h.Start(ctx, "openssl", "s_server", "-accept", fmt.Sprintf("%s:%d", h.Addr(), tlsPort),
			"-cert", cert, "-key", key, "-www")
	}
}

type tlsEnv struct {
	*serverEnv
}

func newTLSEnv(t *testing.T, ctx context.Context, n int) *tlsEnv {
	t.Helper()
	needTools(t, "openssl", "curl")
	return &tlsEnv{newServerEnv(t, ctx, n, tlsPort, v1alpha1.ProtocolTLS, startSServer(t.TempDir()))}
}

// curl fetches https://name/ from web (name resolved to api, the
// certificate not verified: it is self-signed) and returns curl's exit
// code, the page and curl's error output.
func (e *tlsEnv) curl(t *testing.T, ctx context.Context, name string) (code int, page, errOut string) {
	t.Helper()
	out, errOut, code, err := runClient(ctx, e.Host(webHost), "curl", "-sS", "-k", "--max-time", "5",
		"--resolve", fmt.Sprintf("%s:%d:%s", name, tlsPort, e.Host(e.Server).Addr()), "https://"+name+"/")
	if err != nil {
		t.Fatal(err)
	}
	return code, out, errOut
}

// sClient runs openssl s_client from web with args (at most 10s), sends a
// GET / once the handshake is done and returns its exit code and its whole
// output.
func (e *tlsEnv) sClient(t *testing.T, ctx context.Context, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := e.Host(webHost).Command(ctx, "openssl", append([]string{"s_client", "-connect", e.ServerAddr().String(), "-ign_eof"}, args...)...)
	cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case ctx.Err() != nil:
		t.Fatalf("openssl s_client %s: timed out\n%s", strings.Join(args, " "), out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("openssl s_client: %v\n%s", err, out)
	return 0, ""
}

// goHandshake runs a Go crypto/tls handshake for serverName from web over
// a raw connection, one byte per write (one TCP segment each) when
// bytewise, and returns the connection and the handshake's error.
func (e *tlsEnv) goHandshake(t *testing.T, ctx context.Context, serverName string, bytewise bool) (*rawConn, *tls.Conn, error) {
	t.Helper()
	c := dialRaw(t, ctx, e.Host(webHost), e.ServerAddr())
	var conn net.Conn = c.c
	if bytewise {
		conn = byteWriter{c.c}
	}
	tc := tls.Client(conn, &tls.Config{ServerName: serverName, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	hctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	return c, tc, tc.HandshakeContext(hctx)
}

// byteWriter writes one byte per Write to its TCPConn (TCP_NODELAY is set:
// one segment each).
type byteWriter struct{ *net.TCPConn }

func (w byteWriter) Write(b []byte) (int, error) {
	for i := range b {
		if _, err := w.TCPConn.Write(b[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(b), nil
}

// tlsLearned is the rule discovery must teach, and tlsLearnedYAML its
// export.
var tlsLearned = []v1alpha1.Rule{{
	Name:   "from-web-tls-443",
	Origin: v1alpha1.OriginLearned,
	Peers:  []v1alpha1.Peer{{Segment: webHost}},
	Ports:  []v1alpha1.PortProtocol{{Port: tlsPort, Protocol: v1alpha1.ProtocolTLS}},
	TLS:    &v1alpha1.TLSMatch{ServerNames: []string{apiName}},
}}

const tlsLearnedYAML = `apiVersion: bulkhead.io/v1alpha1
kind: SegmentPolicy
metadata:
  name: api
  namespace: demo
spec:
  ingress:
  - name: from-web-tls-443
    origin: learned
    peers:
    - segment: web
    ports:
    - port: 443
      protocol: tls
    tls:
      serverNames:
      - api.example.test
`

// TestTLS: in discover mode curl's ClientHello (SNI api.example.test)
// becomes one learned rule with that server name, exported as exactly that
// YAML. In protect, curl, openssl s_client and Go (with the ClientHello in
// one-byte segments) complete their handshakes for api.example.test and
// get s_server's page through the spliced connection; other.example.test,
// and a ClientHello without SNI, get bulkhead's access_denied alert (curl
// and s_client report it) and the connection is closed; `bulkhead
// violations` shows "CLIENT_HELLO other.example.test (h2)". In monitor the
// other name reaches the server and is reported.
func TestTLS(t *testing.T) {
	ctx := testCtx(t)
	e := newTLSEnv(t, ctx, 22)

	code, page, errOut := e.curl(t, ctx, apiName)
	if code != 0 || !strings.Contains(page, pageMark) {
		t.Fatalf("discover: curl https://%s/: exit %d, page %q\n%s", apiName, code, page, errOut)
	}
	exported := waitIngress(t, ctx, e.serverEnv, tlsLearned)
	out, err := e.CLI(ctx, "policy", "export", "-n", e.Namespace)
	if err != nil {
		t.Fatalf("bulkhead policy export: %v\n%s", err, out)
	}
	t.Logf("bulkhead policy export:\n%s", out)
	checkExport(t, e.Env, out, string(exported), tlsLearnedYAML)

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeProtect)

	// Allowed: the handshake completes and the page comes through.
	if code, page, errOut := e.curl(t, ctx, apiName); code != 0 || !strings.Contains(page, pageMark) {
		t.Errorf("protect: curl https://%s/: exit %d, page %q\n%s", apiName, code, page, errOut)
	}
	if code, out := e.sClient(t, ctx, "-servername", apiName); code != 0 || !strings.Contains(out, pageMark) {
		t.Errorf("protect: s_client -servername %s: exit %d\n%s", apiName, code, out)
	}
	for _, bytewise := range []bool{false, true} {
		c, tc, err := e.goHandshake(t, ctx, apiName, bytewise)
		if err != nil {
			t.Errorf("protect: Go handshake for %s (bytewise %v): %v", apiName, bytewise, err)
			continue
		}
		page, err := getPage(tc)
		if err != nil || !strings.Contains(page, pageMark) {
			t.Errorf("protect: Go GET / from %s (bytewise %v): %v, page %q", apiName, bytewise, err, page)
		}
		c.c.Close()
	}

	// Denied: an alert, then the connection is closed.
	code, page, errOut = e.curl(t, ctx, otherName)
	if code != 35 || page != "" || !strings.Contains(errOut, alertText) {
		t.Errorf("protect: curl https://%s/: exit %d (want 35), page %q, stderr %q (want %q)", otherName, code, page, errOut, alertText)
	}
	for _, args := range [][]string{{"-servername", otherName}, {"-noservername"}} {
		code, out := e.sClient(t, ctx, args...)
		if code == 0 || !strings.Contains(out, alertText) || strings.Contains(out, pageMark) {
			t.Errorf("protect: s_client %s: exit %d, want the alert\n%s", strings.Join(args, " "), code, out)
		}
	}
	for _, bytewise := range []bool{false, true} {
		c, _, err := e.goHandshake(t, ctx, otherName, bytewise)
		if err == nil || !strings.Contains(err.Error(), "tls: access denied") {
			t.Errorf("protect: Go handshake for %s (bytewise %v): %v, want remote error: tls: access denied", otherName, bytewise, err)
		}
		if err := c.closedByPeer(5 * time.Second); err != nil {
			t.Errorf("protect: after the alert (bytewise %v): %v", bytewise, err)
		}
	}
	web := e.Host(webHost).Addr().String()
	v := waitViolation(t, ctx, e.Env, "CLIENT_HELLO "+otherName, func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "CLIENT_HELLO" && r.Resource == otherName && r.Aux == "h2" && r.Verdict == "deny"
	})
	if v.Mode != "protect" || v.Reason != "l7_not_allowed" || v.Protocol != "tls" || v.DstPort != tlsPort {
		t.Errorf("the violation: %+v", v)
	}
	waitViolation(t, ctx, e.Env, "ClientHello without SNI", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "CLIENT_HELLO" && r.Resource == "" && r.Verdict == "deny"
	})
	table, err := e.CLI(ctx, "violations", "-n", e.Namespace)
	if err != nil || !strings.Contains(table, "CLIENT_HELLO "+otherName+" (h2)") {
		t.Errorf("bulkhead violations does not show the ClientHello: %v\n%s", err, table)
	}
	t.Logf("bulkhead violations:\n%s", table)

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeMonitor)
	if code, page, errOut := e.curl(t, ctx, otherName); code != 0 || !strings.Contains(page, pageMark) {
		t.Errorf("monitor: curl https://%s/: exit %d, page %q\n%s", otherName, code, page, errOut)
	}
	waitViolation(t, ctx, e.Env, "CLIENT_HELLO "+otherName+" in monitor", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Resource == otherName && r.Verdict == "violation" && r.Mode == "monitor"
	})
	e.serverAlive(t)
}

// getPage asks s_server -www for its page over an established connection.
func getPage(tc *tls.Conn) (string, error) {
	_ = tc.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(tc, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(tc, maxReply))
	return string(b), err
}
