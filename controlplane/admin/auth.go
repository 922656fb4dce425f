package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// The admin API's authorisation is phrased in Kubernetes RBAC terms on the
// SegmentPolicy resource (group bulkhead.io), in a cluster and standalone
// alike; see Access.
const (
	// Group and Resource name the resource every request is checked on.
	Group    = "bulkhead.io"
	Resource = "segmentpolicies"
	// SubresourceFlows is the subresource reading flows, violations,
	// history, the map and explanations is checked on (verb get): who may
	// read a namespace's policies need not see its traffic.
	SubresourceFlows = "flows"
)

// Access is what one request asks to do, as an RBAC check on
// segmentpolicies.bulkhead.io.
type Access struct {
	// Verb is get, list, patch or update.
	Verb string
	// Namespace is the namespace concerned; "" means every namespace
	// (cluster-wide).
	Namespace string
	// Name is the policy concerned, "" for all of the namespace's.
	Name string
	// Subresource is "" or SubresourceFlows.
	Subresource string
}

// String is the check as a sentence fragment: "patch segmentpolicies demo/web".
func (a Access) String() string {
	res := Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	ns := a.Namespace
	if ns == "" {
		ns = "*"
	}
	if a.Name != "" {
		return a.Verb + " " + res + " " + ns + "/" + a.Name
	}
	return a.Verb + " " + res + " in " + ns
}

// User is an authenticated caller.
type User struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// Errors of an Authenticator: WithAuth answers 401 for
// ErrUnauthenticated, 403 for ErrForbidden and 503 for any other error.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrForbidden       = errors.New("forbidden")
)

// Authenticator checks a caller's bearer token and what it may do.
// *TokenAuth (standalone) and *KubeAuth (in a cluster) are two.
type Authenticator interface {
	// Authenticate returns the caller the token belongs to, or an error
	// wrapping ErrUnauthenticated.
	Authenticate(ctx context.Context, token string) (User, error)
	// Authorize returns nil when u may do a, or an error wrapping
	// ErrForbidden.
	Authorize(ctx context.Context, u User, a Access) error
}

// Bounds of authentication.
const (
	// MaxToken bounds a bearer token (Kubernetes' are a few KiB).
	MaxToken = 16 << 10
	// MinTokenFile is the shortest token a token file may hold.
	MinTokenFile = 16
	// MaxApplyNamespaces bounds the reviews of one policy apply: a body
	// naming more namespaces needs update in every namespace.
	MaxApplyNamespaces = 16
)

// TokenAuth is the standalone authenticator: one shared token, compared in
// constant time; whoever holds it may do everything.
type TokenAuth struct {
	sum [sha256.Size]byte
}

var _ Authenticator = (*TokenAuth)(nil)

// NewTokenAuth returns an authenticator accepting token, which must have
// at least MinTokenFile bytes.
func NewTokenAuth(token string) (*TokenAuth, error) {
	if len(token) < MinTokenFile || len(token) > MaxToken {
		return nil, fmt.Errorf("admin token: want %d to %d bytes, have %d", MinTokenFile, MaxToken, len(token))
	}
	return &TokenAuth{sum: sha256.Sum256([]byte(token))}, nil
}

// Authenticate compares the token's hash with the expected one in constant
// time (hashing first makes the time independent of the length too).
func (t *TokenAuth) Authenticate(_ context.Context, token string) (User, error) {
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], t.sum[:]) != 1 {
		return User{}, fmt.Errorf("admin token does not match: %w", ErrUnauthenticated)
	}
	return User{Name: "admin-token"}, nil
}

// Authorize allows everything: the token is the control plane's own.
func (t *TokenAuth) Authorize(context.Context, User, Access) error { return nil }

// LoadOrCreateToken reads the admin token from path (surrounding white
// space removed), or, when the file does not exist, creates it (mode 0600,
// never overwriting) with 32 random bytes in hex. A file readable by group
// or others is refused.
func LoadOrCreateToken(path string) (token string, created bool, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		var b [32]byte
		rand.Read(b[:])
		tok := hex.EncodeToString(b[:])
		if _, err := f.WriteString(tok + "\n"); err != nil {
			f.Close()
			os.Remove(path)
			return "", false, fmt.Errorf("admin token: write %s: %w", path, err)
		}
		if err := errors.Join(f.Sync(), f.Close()); err != nil {
			os.Remove(path)
			return "", false, fmt.Errorf("admin token: write %s: %w", path, err)
		}
		return tok, true, nil
	case !errors.Is(err, fs.ErrExist):
		return "", false, fmt.Errorf("admin token: create %s: %w", path, err)
	}
	tok, err := ReadToken(path)
	if err != nil {
		return "", false, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", false, fmt.Errorf("admin token: %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	return tok, false, nil
}

// ReadToken reads a token file: at most MaxToken bytes, surrounding white
// space removed, at least MinTokenFile bytes left.
func ReadToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxToken+1))
	if err != nil {
		return "", fmt.Errorf("admin token: read %s: %w", path, err)
	}
	if len(b) > MaxToken {
		return "", fmt.Errorf("admin token: %s is over %d bytes", path, MaxToken)
	}
	tok := string(bytes.TrimSpace(b))
	if len(tok) < MinTokenFile {
		return "", fmt.Errorf("admin token: %s holds under %d bytes", path, MinTokenFile)
	}
	return tok, nil
}

// AuthOptions tune WithAuth; the zero value is usable.
type AuthOptions struct {
	// Open lists paths served without authentication. Nil: /healthz,
	// /readyz and /metrics (Prometheus scrapes the control plane's own
	// counters, which name no flow; bind the admin address accordingly).
	Open []string
	// Registerer receives bulkhead_admin_auth_failures_total. Nil: none.
	Registerer prometheus.Registerer
	// Log receives failures (at most one line per reason per LogEvery,
	// with the number left out) and, at Debug, every authorised request.
	// Nil: discarded.
	Log *slog.Logger
	// LogEvery spaces failure lines of one reason. Zero: 1s.
	LogEvery time.Duration
}

// DefaultOpen are the paths AuthOptions.Open defaults to.
var DefaultOpen = []string{"/healthz", "/readyz", "/metrics"}

// Reasons of bulkhead_admin_auth_failures_total.
const (
	ReasonMissing   = "missing"   // no bearer token: 401
	ReasonInvalid   = "invalid"   // a token not accepted: 401
	ReasonForbidden = "forbidden" // authenticated, not allowed: 403
	ReasonError     = "error"     // the authenticator failed: 503
)

type auth struct {
	next    http.Handler
	a       Authenticator
	open    []string
	log     *slog.Logger
	every   time.Duration
	metrics *authMetrics

	mu     sync.Mutex
	last   map[string]time.Time // by reason: the last line logged
	missed map[string]int       // by reason: lines left out since
}

// WithAuth requires every request to next but the open paths to carry
// "Authorization: Bearer <token>" that a authenticates and that is
// authorised for the request's Access (see AccessOf). It answers 401 (with
// WWW-Authenticate) without or with a bad token, 403 when the caller may
// not, 503 when a fails, all as JSON errors; every failure is counted and
// logged (rate-limited). A policy apply is authorised per namespace its
// body names (one review per namespace, at most MaxApplyNamespaces), so the
// body is read here (bounded like the handler's).
func WithAuth(next http.Handler, a Authenticator, o AuthOptions) http.Handler {
	if a == nil {
		panic("admin: WithAuth needs an Authenticator")
	}
	if o.Open == nil {
		o.Open = DefaultOpen
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.LogEvery <= 0 {
		o.LogEvery = time.Second
	}
	return &auth{next: next, a: a, open: o.Open, log: o.Log, every: o.LogEvery,
		metrics: newAuthMetrics(o.Registerer), last: map[string]time.Time{}, missed: map[string]int{}}
}

// ServeHTTP authenticates and authorises r, then serves it with next.
func (h *auth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if slices.Contains(h.open, r.URL.Path) {
		h.next.ServeHTTP(w, r)
		return
	}
	token, ok := bearer(r)
	if !ok {
		h.fail(w, r, ReasonMissing, "", http.StatusUnauthorized, "authentication required: send Authorization: Bearer <token>", nil)
		return
	}
	u, err := h.a.Authenticate(r.Context(), token)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		h.fail(w, r, ReasonInvalid, "", http.StatusUnauthorized, "the bearer token is not accepted", err)
		return
	case err != nil:
		h.fail(w, r, ReasonError, "", http.StatusServiceUnavailable, "authentication is unavailable", err)
		return
	}
	acc, ok := h.access(w, r)
	if !ok {
		return
	}
	for _, a := range acc {
		err := h.a.Authorize(r.Context(), u, a)
		switch {
		case errors.Is(err, ErrForbidden):
			h.fail(w, r, ReasonForbidden, u.Name, http.StatusForbidden, fmt.Sprintf("%s may not %s", u.Name, a), err)
			return
		case err != nil:
			h.fail(w, r, ReasonError, u.Name, http.StatusServiceUnavailable, "authorisation is unavailable", err)
			return
		}
	}
	h.log.Debug("admin request authorised", "user", u.Name, "method", r.Method, "path", r.URL.Path)
	h.next.ServeHTTP(w, r)
}

// access is AccessOf, reading (and putting back) the body of an apply.
func (h *auth) access(w http.ResponseWriter, r *http.Request) ([]Access, bool) {
	var body []byte
	if r.Method == http.MethodPost && r.URL.Path == "/v1/policies/apply" {
		var ok bool
		if body, ok = readBody(w, r, v1alpha1.MaxPolicyFile); !ok {
			return nil, false
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	return AccessOf(r, body), true
}

// bearer returns the request's bearer token.
func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || len(tok) > MaxToken {
		return "", false
	}
	return tok, true
}

// fail answers one refused request, counts it and logs it, at most one line
// per reason per h.every.
func (h *auth) fail(w http.ResponseWriter, r *http.Request, reason, user string, code int, msg string, err error) {
	h.metrics.failures.WithLabelValues(reason).Inc()
	now := time.Now()
	h.mu.Lock()
	log := now.Sub(h.last[reason]) >= h.every
	missed := h.missed[reason]
	if log {
		h.last[reason], h.missed[reason] = now, 0
	} else {
		h.missed[reason]++
	}
	h.mu.Unlock()
	if log {
		args := []any{"reason", reason, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr}
		if user != "" {
			args = append(args, "user", user)
		}
		if err != nil {
			args = append(args, "err", err)
		}
		if missed > 0 {
			args = append(args, "more", missed)
		}
		h.log.Warn("admin request refused", args...)
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bulkhead"`)
	}
	writeError(w, code, msg)
}

// AccessOf is what a request asks to do; body is the body of a policy
// apply (nil for others). The verbs:
//
//	GET  /v1/policies, /v1/segments, /v1/proxies, /v1/infrastructure,
//	     /v1/promotions, /v1/envoy/bootstrap      list (get) cluster-wide
//	GET  /v1/policies/export?namespace=NS         list in NS (cluster-wide without)
//	POST /v1/policies/apply                       update in every namespace the body names
//	                                              (cluster-wide beyond MaxApplyNamespaces)
//	PUT  /v1/segments/NS/NAME/mode,
//	POST /v1/segments/NS/NAME/promotion/veto      patch NS/NAME
//	PUT  /v1/namespaces/NS/mode                   patch in NS
//	GET  /v1/flows, /v1/violations, /v1/history   get segmentpolicies/flows in the
//	     ?segment=NS[/NAME]                       segment's namespace (cluster-wide without)
//	GET  /v1/map?namespace=NS                     get segmentpolicies/flows in NS
//	POST /v1/explain, /v1/replay, /v1/drift       get segmentpolicies/flows cluster-wide
//
// Any other request needs an authenticated caller only (it is answered 404
// or 405); an apply whose body does not parse likewise (it is answered
// 400 and changes nothing).
func AccessOf(r *http.Request, body []byte) []Access {
	q := r.URL.Query()
	p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	flowsIn := func(seg string) []Access {
		ns, _, _ := strings.Cut(seg, "/")
		return []Access{{Verb: "get", Namespace: ns, Subresource: SubresourceFlows}}
	}
	switch r.Method {
	case http.MethodGet:
		switch r.URL.Path {
		case "/v1/policies", "/v1/segments", "/v1/proxies", "/v1/infrastructure", "/v1/promotions":
			return []Access{{Verb: "list"}}
		case "/v1/envoy/bootstrap":
			return []Access{{Verb: "get"}}
		case "/v1/policies/export":
			return []Access{{Verb: "list", Namespace: q.Get("namespace")}}
		case "/v1/flows", "/v1/violations", "/v1/history":
			return flowsIn(q.Get("segment"))
		case "/v1/map":
			return flowsIn(q.Get("namespace"))
		}
	case http.MethodPost:
		switch {
		case r.URL.Path == "/v1/policies/apply":
			ps, err := v1alpha1.UnmarshalYAML(body)
			if err != nil {
				return nil
			}
			var out []Access
			for _, pol := range ps {
				a := Access{Verb: "update", Namespace: pol.Namespace}
				if !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
			if len(out) > MaxApplyNamespaces {
				return []Access{{Verb: "update"}}
			}
			return out
		case r.URL.Path == "/v1/explain", r.URL.Path == "/v1/replay", r.URL.Path == "/v1/drift":
			return []Access{{Verb: "get", Subresource: SubresourceFlows}}
		case len(p) == 6 && p[0] == "v1" && p[1] == "segments" && p[4] == "promotion" && p[5] == "veto":
			return []Access{{Verb: "patch", Namespace: p[2], Name: p[3]}}
		}
	case http.MethodPut:
		switch {
		case len(p) == 5 && p[0] == "v1" && p[1] == "segments" && p[4] == "mode":
			return []Access{{Verb: "patch", Namespace: p[2], Name: p[3]}}
		case len(p) == 4 && p[0] == "v1" && p[1] == "namespaces" && p[3] == "mode":
			return []Access{{Verb: "patch", Namespace: p[2]}}
		}
	}
	return nil
}
