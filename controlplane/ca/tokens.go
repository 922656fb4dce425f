package ca

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/bulkhead-io/bulkhead/internal/atomicfile"
)

// Authenticator checks the credential of an Issue request: nil when token
// allows a certificate for node. Standalone: Tokens; in a cluster, a
// TokenReview of the pod's projected service-account token bound to the
// node's workload.
type Authenticator interface {
	Authenticate(ctx context.Context, node, token string) error
}

// ErrDenied is returned (wrapped) by an Authenticator that refuses.
var ErrDenied = errors.New("credential refused")

// BootstrapTokenFile is the bootstrap token's file in the state folder.
const BootstrapTokenFile = "bootstrap-token"

// MaxToken bounds a credential.
const MaxToken = 16 << 10

// Tokens authenticates with bootstrap tokens: either the one token of
// <state>/bootstrap-token (created, 0600, when absent), which allows any
// node id, or a tokens file mapping each token to the node ids it allows.
type Tokens struct {
	any   [sha256.Size]byte // the bootstrap token's hash; zero when a file is used
	file  bool
	nodes map[[sha256.Size]byte][]string
}

var _ Authenticator = (*Tokens)(nil)

// TokensFile is the YAML of a tokens file:
//
//	tokens:
//	- token: 3f1c…      # at least 16 characters
//	  nodes: [redis.demo, cart.demo]
type TokensFile struct {
	Tokens []TokenEntry `json:"tokens"`
}

// TokenEntry is one token and the node ids it may obtain certificates for.
type TokenEntry struct {
	Token string   `json:"token"`
	Nodes []string `json:"nodes"`
}

// LoadTokens reads path (a tokens file) when set; otherwise it reads
// <dir>/bootstrap-token, creating it with a random token when absent.
func LoadTokens(dir, path string) (*Tokens, error) {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("ca: tokens file: %w", err)
		}
		var f TokensFile
		if err := yaml.UnmarshalStrict(data, &f); err != nil {
			return nil, fmt.Errorf("ca: tokens file %s: %w", path, err)
		}
		t := &Tokens{file: true, nodes: map[[sha256.Size]byte][]string{}}
		for i, e := range f.Tokens {
			if len(e.Token) < 16 || len(e.Token) > MaxToken {
				return nil, fmt.Errorf("ca: tokens file %s: token %d: want 16 to %d characters", path, i, MaxToken)
			}
			if len(e.Nodes) == 0 {
				return nil, fmt.Errorf("ca: tokens file %s: token %d allows no node", path, i)
			}
			for _, n := range e.Nodes {
				if _, _, err := SplitNode(n); err != nil {
					return nil, fmt.Errorf("ca: tokens file %s: token %d: %w", path, i, err)
				}
			}
			h := sha256.Sum256([]byte(e.Token))
			if _, dup := t.nodes[h]; dup {
				return nil, fmt.Errorf("ca: tokens file %s: token %d appears twice", path, i)
			}
			t.nodes[h] = slices.Clone(e.Nodes)
		}
		return t, nil
	}
	p := filepath.Join(dir, BootstrapTokenFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("ca: bootstrap token: %w", err)
		}
		data = []byte(hex.EncodeToString(b[:]) + "\n")
		if err := atomicfile.Write(p, data, 0o600); err != nil {
			return nil, fmt.Errorf("ca: bootstrap token: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("ca: bootstrap token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if len(tok) < 16 {
		return nil, fmt.Errorf("ca: bootstrap token in %s is shorter than 16 characters", p)
	}
	return &Tokens{any: sha256.Sum256([]byte(tok))}, nil
}

// Authenticate allows node when token is the bootstrap token, or a token of
// the tokens file that lists node.
func (t *Tokens) Authenticate(_ context.Context, node, token string) error {
	if token == "" || len(token) > MaxToken {
		return fmt.Errorf("%w: no token", ErrDenied)
	}
	h := sha256.Sum256([]byte(token))
	if !t.file {
		if subtle.ConstantTimeCompare(h[:], t.any[:]) == 1 {
			return nil
		}
		return fmt.Errorf("%w: unknown token", ErrDenied)
	}
	nodes, ok := t.nodes[h] // keyed by a hash: the lookup leaks nothing of the token
	if !ok {
		return fmt.Errorf("%w: unknown token", ErrDenied)
	}
	if !slices.Contains(nodes, node) {
		return fmt.Errorf("%w: the token does not allow node %q", ErrDenied, node)
	}
	return nil
}
