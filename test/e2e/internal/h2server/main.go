//lint:file-ignore SA1019 the h2c upgrade (Upgrade: h2c) is served only by golang.org/x/net/http2/h2c; net/http has prior knowledge alone.

// Command h2server is the HTTP/2 server of the end-to-end tests: a real
// gRPC-Go server (the standard health service: Check, Watch, List; the
// service "flip" changes status every 100ms) and a
// Go h2c HTTP server (golang.org/x/net/http2/h2c: prior knowledge and the
// HTTP/1.1 upgrade). Every handler it runs prints "handler <name>" on
// standard output first, so that a test can prove a denied request never
// reached one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// out serialises the handler lines.
var out sync.Mutex

func called(name string) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(os.Stdout, "handler %s\n", name)
}

func main() {
	grpcAddr := flag.String("grpc", "", "address of the gRPC server")
	h2cAddr := flag.String("h2c", "", "address of the h2c HTTP server")
	flag.Parse()
	if err := run(*grpcAddr, *h2cAddr); err != nil {
		log.Fatal(err)
	}
}

func run(grpcAddr, h2cAddr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	gl, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", h2cAddr)
	if err != nil {
		return err
	}
	gs := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			called(info.FullMethod)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			called(info.FullMethod)
			return h(srv, ss)
		}),
	)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("api", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	// Service "flip" changes status every 100ms: a Watch on it is a
	// long-running stream that keeps receiving messages.
	flipDone := make(chan struct{})
	defer func() {
		stop()
		<-flipDone
	}()
	go func() {
		defer close(flipDone)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		st := healthpb.HealthCheckResponse_SERVING
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			st = healthpb.HealthCheckResponse_SERVING + healthpb.HealthCheckResponse_NOT_SERVING - st
			hs.SetServingStatus("flip", st)
		}
	}()

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		called(r.Method + " " + r.URL.Path)
		n, _ := io.Copy(io.Discard, r.Body)
		switch {
		case r.URL.Path == "/admin":
			fmt.Fprint(w, "admin console\n")
		case strings.HasPrefix(r.URL.Path, "/public/"):
			fmt.Fprintf(w, "public %s %d\n", r.URL.Path, n)
		default:
			http.NotFound(w, r)
		}
	})
	srv := &http.Server{Handler: h2c.NewHandler(mux, &http2.Server{}), ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(gl) }()
	go func() { errc <- srv.Serve(hl) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	gs.Stop()
	_ = srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
