//lint:file-ignore SA1019 golang.org/x/net/http2 is the real client/server the parser is checked against (h2c: net/http has no upgrade).

package http2

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

// relay accepts one connection on a loopback port, forwards it to
// upstream and records both directions; wait returns the recordings once
// both directions ended.
type relay struct {
	ln       net.Listener
	req, rep bytes.Buffer
	done     chan struct{}
}

func newRelay(t *testing.T, upstream string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		c, err := ln.Accept()
		_ = ln.Close()
		if err != nil {
			return
		}
		defer c.Close()
		u, err := net.Dial("tcp", upstream)
		if err != nil {
			return
		}
		defer u.Close()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.MultiWriter(u, &r.req), c)
			_ = u.(*net.TCPConn).CloseWrite()
		}()
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.MultiWriter(c, &r.rep), u)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		wg.Wait()
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-r.done
	})
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) wait(t *testing.T) conn {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the recorded connection did not end")
	}
	return conn{req: r.req.Bytes(), rep: r.rep.Bytes()}
}

// count returns the request frames and the complete reply frames.
func count(req, rep []result) (nreq, nrep int) {
	for _, r := range req {
		if r.Op == l7.OpFrame {
			nreq++
		}
	}
	for _, r := range rep {
		if r.Op == l7.OpFrame && !r.Partial {
			nrep++
		}
	}
	return nreq, nrep
}

// TestGRPCServer runs a real gRPC-Go server and client (the health
// service) through a recording relay: the parser frames each call as a
// request with its method as the path and the gRPC flag, and each answer
// as one complete reply.
func TestGRPCServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(ln)
	}()
	defer func() {
		s.Stop()
		<-served
	}()
	r := newRelay(t, ln.Addr().String())
	cc, err := grpc.NewClient("passthrough:///"+r.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := healthpb.NewHealthClient(cc)
	const calls = 20
	for range calls {
		if _, err := cl.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_ = cc.Close()
	c := r.wait(t)
	req, rep := replay(t, c)
	nreq, nrep := count(req, rep)
	if nreq != calls || nrep != calls {
		t.Errorf("%d requests, %d complete replies; want %d each", nreq, nrep, calls)
	}
	for _, x := range req {
		if x.Op == l7.OpFrame && (x.Verb != "POST" || x.Resource != "/grpc.health.v1.Health/Check" || x.Args&ArgsGRPC == 0) {
			t.Errorf("request frame %v", x)
		}
	}
}

// TestH2CServer runs golang.org/x/net/http2's client (prior knowledge)
// against a real h2c server: GETs and POSTs, one reply per request.
func TestH2CServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	}), &http2.Server{}), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	defer func() {
		_ = srv.Close()
		<-served
	}()
	r := newRelay(t, ln.Addr().String())
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	const n = 10
	for i := range n {
		var body io.Reader
		method := "GET"
		if i%2 == 1 {
			method, body = "POST", bytes.NewReader(make([]byte, 50000))
		}
		req, _ := http.NewRequest(method, "http://"+r.addr()+"/x/../echo", body)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	tr.CloseIdleConnections()
	c := r.wait(t)
	req, rep := replay(t, c)
	l7test.CheckCorpus(t, req, n)
	nreq, nrep := count(req, rep)
	if nreq != n || nrep != n {
		t.Errorf("%d requests, %d complete replies; want %d each", nreq, nrep, n)
	}
	for _, x := range req {
		if x.Op == l7.OpFrame && x.Resource != "/echo" {
			t.Errorf("request frame %v", x)
		}
	}
}
