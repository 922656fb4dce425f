package ca

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Kubernetes binding of Issue credentials.
const (
	// Audience is the audience of the projected service-account token a
	// proxy presents.
	Audience = "bulkhead"
	// AnnotationNode is the pod annotation that names a pod's node id
	// (written by the injector).
	AnnotationNode = "bulkhead.io/node"
	// extraPodName and extraPodUID are the TokenReview extras of a token
	// bound to a pod.
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// PodNodeFunc names the node id of a running pod (namespace, name, uid):
// its workload's, as the control plane derives it. An error refuses.
type PodNodeFunc func(ctx context.Context, namespace, name, uid string) (node string, err error)

// TokenReview authenticates Issue requests in a cluster: the token must be
// a service-account token of Audience bound to a pod (a projected token),
// which the API server's TokenReview accepts; the pod must exist with that
// uid, and its node id (PodNodeFunc) must be the one asked for — so a pod
// obtains only its own workload's certificate. It is safe for concurrent
// use.
type TokenReview struct {
	client   kubernetes.Interface
	audience string
	podNode  PodNodeFunc
}

var _ Authenticator = (*TokenReview)(nil)

// NewTokenReview builds a TokenReview authenticator. audience "": Audience;
// podNode nil: PodAnnotation(client).
func NewTokenReview(client kubernetes.Interface, audience string, podNode PodNodeFunc) *TokenReview {
	if audience == "" {
		audience = Audience
	}
	if podNode == nil {
		podNode = PodAnnotation(client)
	}
	return &TokenReview{client: client, audience: audience, podNode: podNode}
}

// Authenticate checks token with a TokenReview and binds it to node.
func (r *TokenReview) Authenticate(ctx context.Context, node, token string) error {
	if token == "" || len(token) > MaxToken {
		return fmt.Errorf("%w: no token", ErrDenied)
	}
	_, ns, err := SplitNode(node)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDenied, err)
	}
	tr, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{r.audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token review: %w", err)
	}
	st := tr.Status
	if !st.Authenticated {
		return fmt.Errorf("%w: token not accepted: %s", ErrDenied, st.Error)
	}
	if !slices.Contains(st.Audiences, r.audience) {
		return fmt.Errorf("%w: token not for audience %q", ErrDenied, r.audience)
	}
	saNS, _, ok := serviceAccount(st.User.Username)
	if !ok {
		return fmt.Errorf("%w: %q is not a service account", ErrDenied, st.User.Username)
	}
	if saNS != ns {
		return fmt.Errorf("%w: a service account of namespace %s cannot obtain node %s", ErrDenied, saNS, node)
	}
	pod, uid := first(st.User.Extra[extraPodName]), first(st.User.Extra[extraPodUID])
	if pod == "" || uid == "" {
		return fmt.Errorf("%w: the token is not bound to a pod (use a projected service-account token)", ErrDenied)
	}
	got, err := r.podNode(ctx, ns, pod, uid)
	if err != nil {
		if errors.Is(err, ErrDenied) {
			return err
		}
		return fmt.Errorf("pod %s/%s: %w", ns, pod, err)
	}
	if got != node {
		return fmt.Errorf("%w: pod %s/%s is node %q, not %q", ErrDenied, ns, pod, got, node)
	}
	return nil
}

// PodAnnotation is a PodNodeFunc that reads the pod's AnnotationNode
// (the injector writes it; the namespace check of Authenticate keeps a pod
// to its own namespace whatever the annotation says).
func PodAnnotation(client kubernetes.Interface) PodNodeFunc {
	return func(ctx context.Context, namespace, name, uid string) (string, error) {
		p, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("%w: pod %s/%s does not exist", ErrDenied, namespace, name)
		}
		if err != nil {
			return "", err
		}
		if string(p.UID) != uid {
			return "", fmt.Errorf("%w: pod %s/%s was replaced", ErrDenied, namespace, name)
		}
		if p.DeletionTimestamp != nil {
			return "", fmt.Errorf("%w: pod %s/%s is being deleted", ErrDenied, namespace, name)
		}
		node := p.Annotations[AnnotationNode]
		if node == "" {
			return "", fmt.Errorf("%w: pod %s/%s has no %s annotation", ErrDenied, namespace, name, AnnotationNode)
		}
		return node, nil
	}
}

func serviceAccount(user string) (namespace, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	return namespace, name, ok && namespace != "" && name != ""
}

func first(l authnv1.ExtraValue) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
}
