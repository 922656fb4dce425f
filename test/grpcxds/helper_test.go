package grpcxds

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
)

// helperArg marks a run of the test binary as one of the gRPC processes
// the tests start: gRPC-Go reads GRPC_XDS_BOOTSTRAP when its xds package
// first needs it, so every xDS consumer is a process of its own, started
// with the variable already set (`env GRPC_XDS_BOOTSTRAP=… <test binary>
// grpcxds-helper server|client …`), inside a lab host's network namespace.
const helperArg = "grpcxds-helper"

// runHelper runs a helper role and returns the process's exit status.
//
//	server <ip:port>   an xDS-enabled gRPC server (xds.NewGRPCServer) with the
//	                   health service; prints "serving-mode <mode> <err>" on
//	                   each change; stops on SIGTERM.
//	client <target>    dials target (xds:///…), calls Health/Check, prints
//	                   "check: <status>" or "check error: <code>".
func runHelper(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grpcxds-helper server <ip:port> | client <target>")
		return 2
	}
	switch args[0] {
	case "server":
		return helperServer(args[1])
	case "client":
		return helperClient(args[1])
	}
	fmt.Fprintf(os.Stderr, "unknown role %q\n", args[0])
	return 2
}

func helperServer(addr string) int {
	srv, err := xds.NewGRPCServer(
		grpc.Creds(insecure.NewCredentials()),
		xds.ServingModeCallback(func(a net.Addr, args xds.ServingModeChangeArgs) {
			fmt.Printf("serving-mode %s %v\n", args.Mode, args.Err)
		}),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xds server:", err)
		return 1
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.Stop()
	}()
	fmt.Println("listening", lis.Addr())
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}

func helperClient(target string) int {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil {
		fmt.Printf("check error: %s (state %s)\n", status.Code(err), conn.GetState())
		return 1
	}
	fmt.Printf("check: %s\n", resp.GetStatus())
	return 0
}
