package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/demo"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// The hosts of the tests whose server is not redis: web is the client, api
// the server behind bulkhead-proxy, both in namespace demo.
const (
	webHost = "web"
	apiHost = "api"
)

// serverEnv is the world of the HTTP and TLS tests: demo's Env (control
// plane, proxy, CLI) around another server than redis.
type serverEnv struct {
	*demo.Env
	// Port is the server's port, declared with its protocol in the
	// workloads file.
	Port uint16
	// Server is the server process.
	ServerProc *lab.Proc
}

// startFunc starts the server in h, listening on its lab address, and
// returns its process; the caller waits for the port.
type startFunc func(ctx context.Context, h *lab.Host) (*lab.Proc, error)

// needTools fails the test unless the tools it runs are installed (after
// needRoot's checks).
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	needRoot(t)
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("end-to-end test: needs %s (apt-get install nginx-light curl openssl): %v", tool, err)
		}
	}
}

// newServerEnv builds lab n with hosts web and api, a workloads file that
// declares api's port with protocol proto (so identity and compile must
// accept it), the control plane in discover mode, the server started by
// start, the proxy's redirect and the proxy. It is all removed when the
// test ends, also on failure, after the end of each process's output is
// logged when the test failed.
//
// demo.Start would run redis-server; this reuses the rest of demo.Env,
// whose methods need only its exported fields.
func newServerEnv(t *testing.T, ctx context.Context, n int, port uint16, proto string, start startFunc) *serverEnv {
	t.Helper()
	l, err := lab.New(ctx, lab.Options{Prefix: labPrefix(n), Subnet: labSubnet(n), Log: testLog(t), Grace: time.Second, KeepDir: keep})
	if err != nil {
		t.Fatal(err)
	}
	e := &serverEnv{Env: &demo.Env{
		Config: demo.Config{
			BinDir:         binDir(t),
			Prefix:         labPrefix(n),
			Subnet:         labSubnet(n),
			Namespace:      "demo",
			Hosts:          []string{webHost, apiHost},
			Server:         apiHost,
			DefaultMode:    string(v1alpha1.ModeDiscover),
			ReportInterval: 200 * time.Millisecond,
			LogLevel:       "info",
			Log:            testLog(t),
			Keep:           keep,
		},
		Lab:      l,
		GRPCAddr: netip.AddrPortFrom(l.HostAddr(), demo.GRPCPort),
	}, Port: port}
	t.Cleanup(func() {
		if t.Failed() {
			dumpProcs(t, map[string]*lab.Proc{"bulkhead-controlplane": e.ControlPlane, "bulkhead-proxy": e.Proxy, "server": e.ServerProc})
			if keep {
				t.Logf("kept %s", l.Dir())
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	if err := e.build(ctx, proto, start); err != nil {
		t.Fatalf("start the environment: %v", err)
	}
	return e
}

func (e *serverEnv) build(ctx context.Context, proto string, start startFunc) error {
	for _, h := range e.Hosts {
		if _, err := e.Lab.AddHost(h); err != nil {
			return err
		}
	}
	e.Dir = filepath.Join(e.Lab.Dir(), "demo")
	if err := os.Mkdir(e.Dir, 0o755); err != nil {
		return err
	}
	e.StateDir = filepath.Join(e.Dir, "state")
	e.WorkloadsFile = filepath.Join(e.Dir, "workloads.yaml")
	var b bytes.Buffer
	b.WriteString("workloads:\n")
	for _, name := range e.Hosts {
		fmt.Fprintf(&b, "- name: %s\n  namespace: %s\n  ips: [%s]\n", name, e.Namespace, e.Host(name).Addr())
		if name == e.Server {
			fmt.Fprintf(&b, "  ports: [{port: %d, protocol: %s}]\n", e.Port, proto)
		}
	}
	if err := os.WriteFile(e.WorkloadsFile, b.Bytes(), 0o644); err != nil {
		return err
	}
	if err := e.StartControlPlane(ctx); err != nil {
		return err
	}
	h := e.Host(e.Server)
	p, err := start(ctx, h)
	if err != nil {
		return err
	}
	e.ServerProc = p
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := lab.WaitTCP(wctx, h, e.ServerAddr()); err != nil {
		return errors.Join(fmt.Errorf("server not up: %w", err), p.Err())
	}
	if _, err := h.Run(ctx, e.Bin("bulkhead-proxy"), "init", "--exclude-ports", strconv.Itoa(demo.ProxyAdminPort)); err != nil {
		return fmt.Errorf("install the redirect: %w", err)
	}
	return e.StartProxy(ctx)
}

// ServerAddr is the server's address and port, where clients connect.
func (e *serverEnv) ServerAddr() netip.AddrPort {
	return netip.AddrPortFrom(e.Host(e.Server).Addr(), e.Port)
}

// serverAlive fails the test when the server or the proxy has exited.
func (e *serverEnv) serverAlive(t *testing.T) {
	t.Helper()
	for name, p := range map[string]*lab.Proc{"server": e.ServerProc, "bulkhead-proxy": e.Proxy} {
		if err := p.Err(); err != nil {
			t.Fatalf("%s exited: %v", name, err)
		}
	}
}

// runClient runs a client command in host from, bounded by 10s, and returns its
// standard output and error apart and its exit code (a non-zero exit is
// not an error: the output says what happened).
func runClient(ctx context.Context, h *lab.Host, name string, args ...string) (stdout, stderr string, code int, err error) {
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := h.Command(tctx, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case tctx.Err() != nil:
		return o.String(), e.String(), -1, fmt.Errorf("%s %s: timed out\n%s", name, strings.Join(args, " "), e.String())
	case errors.As(err, &exit):
		return o.String(), e.String(), exit.ExitCode(), nil
	default:
		return o.String(), e.String(), -1, fmt.Errorf("%s: %w", name, err)
	}
	return o.String(), e.String(), 0, nil
}
