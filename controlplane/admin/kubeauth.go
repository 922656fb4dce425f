package admin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KubeAuth is the authenticator in a cluster: the caller's Kubernetes
// bearer token (a service account's, an OIDC id token…) checked with a
// TokenReview, each Access with a SubjectAccessReview against RBAC on
// segmentpolicies.bulkhead.io. The control plane's service account needs
// create on tokenreviews.authentication.k8s.io and
// subjectaccessreviews.authorization.k8s.io (system:auth-delegator).
//
// Answers are cached for KubeAuthOptions.TTL (at most MaxKubeCache tokens
// and as many access decisions, expired first, else all dropped when full),
// so a burst of requests costs one review, and a revoked token or role
// binding takes effect within the TTL.
type KubeAuth struct {
	c         kubernetes.Interface
	audiences []string
	ttl       time.Duration
	now       func() time.Time

	mu     sync.Mutex
	users  map[[sha256.Size]byte]cached[User]
	allows map[string]cached[error]
}

// cached is one answer and when it expires.
type cached[T any] struct {
	v   T
	err error
	exp time.Time
}

// MaxKubeCache bounds each of KubeAuth's caches.
const MaxKubeCache = 1024

var _ Authenticator = (*KubeAuth)(nil)

// KubeAuthOptions tune KubeAuth; the zero value is usable.
type KubeAuthOptions struct {
	// Audiences the token must be meant for. Nil: the API server's.
	Audiences []string
	// TTL is how long answers are cached. Zero: 10s; negative: no cache.
	TTL time.Duration
	// Now is the cache's clock. Nil: time.Now.
	Now func() time.Time
}

// NewKubeAuth returns an authenticator asking the API server behind c.
func NewKubeAuth(c kubernetes.Interface, o KubeAuthOptions) *KubeAuth {
	if o.TTL == 0 {
		o.TTL = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &KubeAuth{c: c, audiences: o.Audiences, ttl: o.TTL, now: o.Now,
		users: map[[sha256.Size]byte]cached[User]{}, allows: map[string]cached[error]{}}
}

// recall returns a cached answer of m.
func recall[K comparable, T any](k *KubeAuth, m map[K]cached[T], key K) (cached[T], bool) {
	if k.ttl < 0 {
		return cached[T]{}, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := m[key]
	if !ok || !k.now().Before(c.exp) {
		return cached[T]{}, false
	}
	return c, true
}

// remember caches an answer in m, making room when m is full.
func remember[K comparable, T any](k *KubeAuth, m map[K]cached[T], key K, v T, err error) {
	if k.ttl < 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if len(m) >= MaxKubeCache {
		for key, c := range m {
			if !now.Before(c.exp) {
				delete(m, key)
			}
		}
		if len(m) >= MaxKubeCache {
			clear(m)
		}
	}
	m[key] = cached[T]{v: v, err: err, exp: now.Add(k.ttl)}
}

// Authenticate asks a TokenReview (or its cached answer).
func (k *KubeAuth) Authenticate(ctx context.Context, token string) (User, error) {
	sum := sha256.Sum256([]byte(token))
	if c, ok := recall(k, k.users, sum); ok {
		return c.v, c.err
	}
	u, err := k.review(ctx, token)
	if err == nil || errors.Is(err, ErrUnauthenticated) {
		remember(k, k.users, sum, u, err)
	}
	return u, err
}

// review asks a TokenReview.
func (k *KubeAuth) review(ctx context.Context, token string) (User, error) {
	tr, err := k.c.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: k.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return User{}, fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated {
		msg := tr.Status.Error
		if msg == "" {
			msg = "not authenticated"
		}
		return User{}, fmt.Errorf("token review: %s: %w", msg, ErrUnauthenticated)
	}
	u := User{Name: tr.Status.User.Username, UID: tr.Status.User.UID, Groups: tr.Status.User.Groups}
	if len(tr.Status.User.Extra) > 0 {
		u.Extra = make(map[string][]string, len(tr.Status.User.Extra))
		for k, v := range tr.Status.User.Extra {
			u.Extra[k] = v
		}
	}
	return u, nil
}

// Authorize asks a SubjectAccessReview for a on segmentpolicies.bulkhead.io
// (or its cached answer).
func (k *KubeAuth) Authorize(ctx context.Context, u User, a Access) error {
	key := fmt.Sprintf("%q %q %q %v %q", u.Name, u.UID, u.Groups, u.Extra, a)
	if c, ok := recall(k, k.allows, key); ok {
		return c.err
	}
	err := k.access(ctx, u, a)
	if err == nil || errors.Is(err, ErrForbidden) {
		remember(k, k.allows, key, nil, err)
	}
	return err
}

// access asks a SubjectAccessReview.
func (k *KubeAuth) access(ctx context.Context, u User, a Access) error {
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Name, UID: u.UID, Groups: u.Groups,
		ResourceAttributes: &authzv1.ResourceAttributes{
			Group: Group, Resource: Resource, Subresource: a.Subresource,
			Verb: a.Verb, Namespace: a.Namespace, Name: a.Name,
		},
	}}
	if len(u.Extra) > 0 {
		sar.Spec.Extra = make(map[string]authzv1.ExtraValue, len(u.Extra))
		for k, v := range u.Extra {
			sar.Spec.Extra[k] = v
		}
	}
	res, err := k.c.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("subject access review: %w", err)
	}
	if !res.Status.Allowed || res.Status.Denied {
		why := res.Status.Reason
		if why == "" {
			why = "no RBAC rule allows it"
		}
		return fmt.Errorf("%s: %s: %w", a, why, ErrForbidden)
	}
	return nil
}
