package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
)

// MaxToken bounds a token file the CLI reads.
const MaxToken = 16 << 10

// Auth is where the CLI finds the bearer token it sends to the admin API,
// first match wins:
//
//  1. --token-file FILE (env BULKHEAD_TOKEN_FILE);
//  2. env BULKHEAD_TOKEN (the token itself);
//  3. --state-dir DIR (env BULKHEAD_STATE_DIR): DIR/admin-token, the file
//     a control plane started with the same --state-dir created — the CLI
//     running next to the control plane;
//  4. none: the admin API answers 401.
//
// In a cluster the token is the caller's Kubernetes bearer token: in
// cluster mode (--kube, --kubeconfig, --context) with none of the above,
// the kubeconfig's token (or token file) is sent; users whose kubeconfig
// authenticates otherwise (client certificates, exec plugins) give one
// explicitly, e.g. BULKHEAD_TOKEN=$(kubectl create token NAME).
type Auth struct {
	TokenFile string
	StateDir  string
	// Env reads environment variables. Nil: os.Getenv.
	Env func(string) string
}

func (a *Auth) flags(pf *pflag.FlagSet) {
	env := a.getenv()
	pf.StringVar(&a.TokenFile, "token-file", env("BULKHEAD_TOKEN_FILE"), "file holding the admin API's bearer token (env BULKHEAD_TOKEN_FILE; or the token in BULKHEAD_TOKEN)")
	pf.StringVar(&a.StateDir, "state-dir", env("BULKHEAD_STATE_DIR"), "the control plane's state dir: use its admin-token (env BULKHEAD_STATE_DIR)")
}

func (a *Auth) getenv() func(string) string {
	if a.Env != nil {
		return a.Env
	}
	return os.Getenv
}

// Token returns the token to send, "" when none is configured.
func (a *Auth) Token() (string, error) {
	switch {
	case a.TokenFile != "":
		return readToken(a.TokenFile)
	case a.getenv()("BULKHEAD_TOKEN") != "":
		return string(bytes.TrimSpace([]byte(a.getenv()("BULKHEAD_TOKEN")))), nil
	case a.StateDir != "":
		return readToken(filepath.Join(a.StateDir, "admin-token"))
	}
	return "", nil
}

func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxToken+1))
	if err != nil {
		return "", fmt.Errorf("token: read %s: %w", path, err)
	}
	if len(b) > MaxToken {
		return "", fmt.Errorf("token: %s is over %d bytes", path, MaxToken)
	}
	tok := string(bytes.TrimSpace(b))
	if tok == "" {
		return "", fmt.Errorf("token: %s is empty", path)
	}
	return tok, nil
}

// kubeToken is the bearer token of the kubeconfig k selects, "" when it
// has none.
func kubeToken(k *KubeFlags) (string, error) {
	cfg, err := k.RestConfig()
	if err != nil {
		return "", err
	}
	if cfg.BearerToken != "" {
		return cfg.BearerToken, nil
	}
	if cfg.BearerTokenFile != "" {
		return readToken(cfg.BearerTokenFile)
	}
	return "", nil
}
