package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// The TLS handshake scenario's server, load and policy.
const (
	// tlsPort is the TLS nginx's port in the server.
	tlsPort = 8443
	// tlsConns is wrk's -c.
	tlsConns = 16
	// tlsAllowed is the server name (SNI) the load sends and the policy
	// allows; tlsDenied one it does not (nginx would serve it).
	tlsAllowed = "allowed.bench.test"
	tlsDenied  = "denied.bench.test"
	// tlsPath is what wrk GETs on each new connection: a small file.
	tlsPath = "/hs"
	tlsBody = 16
	// tlsScenario is the scenario's name.
	tlsScenario = "TLS handshakes, new connection per GET (wrk)"
)

// tlsSuite is the "tls" group: nginx with an ECDSA P-256 certificate, TLS
// session resumption off, loaded by wrk with Connection: close so every
// request is a new TCP connection and a full TLS handshake.
var tlsSuite = suite{
	group: "tls",
	ports: []*bulkheadv1.Port{{Port: tlsPort, Protocol: "tls"}},
	rules: func(peers []*bulkheadv1.Peer) []*bulkheadv1.Rule {
		return []*bulkheadv1.Rule{{
			Name:  "bench/server/from-client-tls-8443",
			Peers: peers,
			Ports: []*bulkheadv1.Port{{Port: tlsPort, Protocol: "tls"}},
			L7: []*bulkheadv1.L7Rule{{
				Resources: []*bulkheadv1.Pattern{{Kind: &bulkheadv1.Pattern_Exact{Exact: tlsAllowed}}},
			}},
		}}
	},
	setup: func(ctx context.Context, b *bench) error { return b.startTLSNginx(ctx) },
	scenarios: func(b *bench) []scenario {
		return []scenario{{
			name: tlsScenario, slug: "tls-handshake",
			group: "tls", port: tlsPort, unit: "handshakes/s", cpuUnit: "µs/handshake", protocol: "tls",
			run: b.tlsLoad, check: b.checkTLSPolicy,
		}}
	},
	about: fmt.Sprintf("**TLS handshakes.** A second nginx (one worker, pinned with the load generator) serves a %d-byte file over TLS on port %d with a self-signed ECDSA P-256 certificate, session cache and tickets off, so no handshake is resumed. `wrk -t 1 -c %d -H 'Connection: close' --timeout 10s` GETs `https://%s:%d%s` (the name is the SNI; wrk's resolver is pointed at the server's address by a script): nginx closes after each response, so every request is a new TCP connection and a full TLS 1.3 handshake — throughput is handshakes per second, p50/p99 are wrk's latency of the GET after its handshake. `openssl s_time` was not used: it sends no SNI and runs one connection at a time. Bulkhead's policy allows the ClientHello with SNI `%s` only (a `tls` rule, exact name) and splices the rest of the connection; before each run the harness checks with `openssl s_client` that `%s` completes a handshake through every arm and that SNI `%s` gets Bulkhead's access_denied alert on the Bulkhead arm.", tlsBody, tlsPort, tlsConns, tlsAllowed, tlsPort, tlsPath, tlsAllowed, tlsAllowed, tlsDenied),
}

// tlsNginxConfig serves dir's www over TLS on tlsPort, without session
// resumption, closing each connection after its response.
func tlsNginxConfig(dir string) string {
	return nginxConf(dir, fmt.Sprintf(`    default_type application/octet-stream;
    server {
        listen %[2]d ssl;
        ssl_certificate %[1]s/cert.pem;
        ssl_certificate_key %[1]s/key.pem;
        ssl_session_cache off;
        ssl_session_tickets off;
        root %[1]s/www;
    }
`, dir, tlsPort))
}

// startTLSNginx makes the certificate (openssl), writes the config and
// the file of tlsPath under b.dir and starts nginx in the server, pinned
// to the load CPU.
func (b *bench) startTLSNginx(ctx context.Context) error {
	if b.prof.TLSTime < time.Second {
		return fmt.Errorf("profile %q: TLS time %v, want at least 1s", b.prof.Name, b.prof.TLSTime)
	}
	dir := filepath.Join(b.dir, "nginx-tls")
	for _, d := range []string{"www", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("tls nginx: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "www", tlsPath), []byte(strings.Repeat("x", tlsBody-1)+"\n"), 0o644); err != nil {
		return fmt.Errorf("tls nginx: %w", err)
	}
	if _, err := b.server.Run(ctx, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", filepath.Join(dir, "key.pem"), "-out", filepath.Join(dir, "cert.pem"),
		"-subj", "/CN="+tlsAllowed, "-addext", "subjectAltName=DNS:"+tlsAllowed, "-days", "2"); err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(tlsNginxConfig(dir)), 0o644); err != nil {
		return fmt.Errorf("tls nginx: %w", err)
	}
	// wrk resolves the URL's host before it runs; the script points it at
	// the server's address while the host stays the SNI.
	script := fmt.Sprintf("function wrk.resolve(host, service)\n  wrk.addrs = wrk.lookup(%q, service)\nend\n", b.server.Addr().String())
	if err := os.WriteFile(b.tlsScript(), []byte(script), 0o644); err != nil {
		return fmt.Errorf("wrk script: %w", err)
	}
	p, err := b.server.Start(ctx, "nice", b.pinned(loadCPU, "nginx", "-p", dir, "-c", conf, "-g", "daemon off;")...)
	if err != nil {
		return err
	}
	return b.waitListen(ctx, p, tlsPort)
}

func (b *bench) tlsScript() string { return filepath.Join(b.dir, "nginx-tls", "resolve.lua") }

// tlsLoad runs wrk with a new connection, and so a full handshake, per
// request for the profile's TLSTime. Its timeout is 10 s, not 2 s: on the
// shared machine a connection now and then waits for a SYN retransmit,
// which then counts in the latency rather than failing the run.
func (b *bench) tlsLoad(ctx context.Context) (result, error) {
	out, err := b.tool(ctx, "wrk", "-t", "1", "-c", strconv.Itoa(tlsConns), "-H", "Connection: close", "--timeout", "10s",
		"-s", b.tlsScript(), "-d", strconv.Itoa(int(b.prof.TLSTime/time.Second))+"s", "--latency",
		"https://"+tlsAllowed+":"+strconv.Itoa(tlsPort)+tlsPath)
	if err != nil {
		return result{}, err
	}
	return parseWrk(out)
}

// sClient makes one TLS handshake with server name sni from the client
// (through the redirect when a proxy is on) and returns openssl's output.
func (b *bench) sClient(ctx context.Context, sni string) (string, error) {
	out, err := b.client.Run(ctx, "openssl", "s_client", "-brief", "-connect", b.target(tlsPort).String(), "-servername", sni)
	return string(out), err
}

// checkTLSPolicy proves an arm completes a handshake for tlsAllowed and,
// on Bulkhead, that the proxy refuses tlsDenied with its access_denied
// alert (nginx would serve it).
func (b *bench) checkTLSPolicy(ctx context.Context, arm Arm) error {
	out, err := b.sClient(ctx, tlsAllowed)
	if err != nil || !strings.Contains(out, "CONNECTION ESTABLISHED") {
		return fmt.Errorf("TLS handshake for %s through %s: %v:\n%s", tlsAllowed, arm, err, clip([]byte(out)))
	}
	if arm != Bulkhead {
		return nil
	}
	out, err = b.sClient(ctx, tlsDenied)
	if err == nil || !strings.Contains(out, "alert access denied") {
		return fmt.Errorf("TLS handshake for %s through %s: %v: want the proxy's access_denied alert:\n%s", tlsDenied, arm, err, clip([]byte(out)))
	}
	return nil
}
