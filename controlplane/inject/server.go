package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Path is where the webhook is served (the MutatingWebhookConfiguration's
// service path).
const Path = "/inject"

// ServerConfig configure Serve.
type ServerConfig struct {
	// Listener to serve on; Serve closes it.
	Listener net.Listener
	// Handler serves Path (Webhook.Handler); /healthz answers 200.
	Handler http.Handler
	// GetCertificate returns the serving certificate: Certs.GetCertificate
	// or FileCert.GetCertificate.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ShutdownTimeout bounds the graceful shutdown (default 5s).
	ShutdownTimeout time.Duration
}

// Serve serves the webhook over TLS (1.2 and later) until ctx is done, then
// shuts down gracefully. Request bodies are bounded (the admission
// handler reads at most 7 MiB).
func Serve(ctx context.Context, cfg ServerConfig, log *slog.Logger) error {
	if cfg.Listener == nil || cfg.Handler == nil || cfg.GetCertificate == nil {
		return errors.New("inject: serve: listener, handler and certificate are required")
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+Path, cfg.Handler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cfg.GetCertificate},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(cfg.Listener, "", "") }()
	select {
	case err := <-done:
		return fmt.Errorf("inject: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("inject: serve: %w", err)
	}
	return nil
}

// FileCert serves a certificate kept in files (cert-manager's Secret
// mounted into the pod), reloaded when they change.
type FileCert struct {
	certFile, keyFile string

	mu    sync.Mutex
	mtime time.Time
	cert  *tls.Certificate
}

// NewFileCert loads the key pair once to check it.
func NewFileCert(certFile, keyFile string) (*FileCert, error) {
	f := &FileCert{certFile: certFile, keyFile: keyFile}
	if _, err := f.GetCertificate(nil); err != nil {
		return nil, err
	}
	return f, nil
}

// GetCertificate returns the key pair, reloading it when the certificate
// file's modification time changed (tls.Config.GetCertificate).
func (f *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	st, err := os.Stat(f.certFile)
	if err != nil {
		return nil, fmt.Errorf("inject: certificate: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cert != nil && st.ModTime().Equal(f.mtime) {
		return f.cert, nil
	}
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		if f.cert != nil { // mid-rotation: keep the last good pair
			return f.cert, nil
		}
		return nil, fmt.Errorf("inject: certificate: %w", err)
	}
	f.cert, f.mtime = &c, st.ModTime()
	return f.cert, nil
}
