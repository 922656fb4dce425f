// Command bulkhead-controlplane runs Bulkhead's control plane standalone:
// policies in a folder, workloads from a YAML file, xDS and flow reports over
// gRPC, the admin API over HTTP.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/run"
)

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "bulkhead-controlplane:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	fs := flag.NewFlagSet("bulkhead-controlplane", flag.ContinueOnError)
	var (
		cfg       run.Config
		mode      = fs.String("default-mode", "", "cluster default mode for new segments: discover, monitor or protect (empty: keep the stored one)")
		logLevel  = fs.String("log-level", "info", "log level: debug, info, warn or error")
		logFormat = fs.String("log-format", "text", "log format: text or json")
	)
	fs.StringVar(&cfg.StateDir, "state-dir", "", "folder of policies and settings (required but in kube mode, where it holds only the flow history)")
	var kf kubeFlags // kube.go
	kf.register(fs)
	inj := registerInject(fs) // inject.go
	fs.StringVar(&cfg.WorkloadsFile, "workloads", "", "standalone workloads file (YAML)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", run.DefaultGRPCAddr, "address serving xDS (ADS) and flow reports")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", run.DefaultAdminAddr, "address serving the admin API, /metrics and /healthz")
	trustFlags(fs, &cfg.Trust) // trust.go
	fs.StringVar(&cfg.AdminAuth.TokenFile, "admin-token-file", "", "file holding the admin API's bearer token (default: <state-dir>/admin-token, created when absent)")
	fs.BoolVar(&cfg.AdminAuth.Insecure, "admin-insecure", false, "serve the admin API without authentication (logged as a warning; never for production)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var err error
	if cfg.Kube, err = kf.config(); err != nil {
		return err
	}
	if cfg.StateDir == "" && cfg.Kube == nil {
		return fmt.Errorf("--state-dir is required")
	}
	switch m := v1alpha1.Mode(*mode); m {
	case "", v1alpha1.ModeDiscover, v1alpha1.ModeMonitor, v1alpha1.ModeProtect:
		cfg.DefaultMode = m
	default:
		return fmt.Errorf("--default-mode %q: want discover, monitor or protect", *mode)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return fmt.Errorf("--log-format %q: want text or json", *logFormat)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(h)
	if cfg.Kube != nil {
		logKubeTo(logger) // kube.go
	}
	return inj.run(ctx, cfg, logger)
}
