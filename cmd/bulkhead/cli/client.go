package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
)

// MaxResponse bounds a response body the client reads.
const MaxResponse = 64 << 20

// DefaultServer is the control plane's admin URL when neither --server nor
// BULKHEAD_SERVER says otherwise.
const DefaultServer = "http://127.0.0.1:15080"

// Client speaks the control plane's admin API (docs/contracts.md).
type Client struct {
	base  *url.URL
	hc    *http.Client
	token string // sent as "Authorization: Bearer"; "" sends none
}

// WithToken returns a copy of c that sends token as its bearer token.
func (c *Client) WithToken(token string) *Client {
	cc := *c
	cc.token = token
	return &cc
}

// NewClient returns a client of the admin API at server (e.g.
// "http://127.0.0.1:15080"). A nil hc means a client with a 30s timeout.
func NewClient(server string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("server %q: want http://host:port: %w", server, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server %q: want http://host:port or https://host:port", server)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: u, hc: hc}, nil
}

// Server is the admin URL the client talks to.
func (c *Client) Server() string { return c.base.String() }

// APIError is an answer of the admin API other than 2xx.
type APIError struct {
	Method, Path string
	Status       int
	Message      string   // the body's "error", or the body itself
	Problems     []string // the body's "problems": one per validation problem
}

func (e *APIError) Error() string {
	msg := e.Message
	if len(e.Problems) > 1 {
		msg = fmt.Sprintf("%d problems:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), msg)
}

// Segment is one row of GET /v1/segments.
type Segment struct {
	Namespace  string        `json:"namespace"`
	Name       string        `json:"name"`
	Mode       v1alpha1.Mode `json:"mode"`
	Workloads  []string      `json:"workloads"`
	Rules      int           `json:"rules"`
	Learned    int           `json:"learned"`
	Violations int64         `json:"violations"`
}

// Key is the segment's "namespace/name".
func (s Segment) Key() string { return s.Namespace + "/" + s.Name }

// FlowRecord is one aggregated flow or violation of GET /v1/flows and
// GET /v1/violations.
type FlowRecord struct {
	Direction  string `json:"direction"`
	SrcIP      string `json:"srcIP"`
	SrcSegment string `json:"srcSegment"`
	DstIP      string `json:"dstIP"`
	DstSegment string `json:"dstSegment"`
	// DstName is, for an egress flow, the DNS name the workload resolved
	// the destination from (empty when none).
	DstName  string `json:"dstName,omitempty"`
	DstPort  int    `json:"dstPort"`
	Protocol string `json:"protocol"`
	Verb     string `json:"verb"`
	Sub      string `json:"sub"`
	// Resource, Aux and MoreResources are the message's L7 detail (HTTP
	// path and host, TLS server name and ALPN, SQL tables and database…;
	// never Redis keys).
	Resource      string    `json:"resource"`
	Aux           string    `json:"aux"`
	MoreResources []string  `json:"moreResources,omitempty"`
	Verdict       string    `json:"verdict"`
	Mode          string    `json:"mode"`
	Rule          string    `json:"rule"`
	Reason        string    `json:"reason"`
	Count         uint64    `json:"count"`
	Bytes         uint64    `json:"bytes"`
	FirstSeen     time.Time `json:"firstSeen"`
	LastSeen      time.Time `json:"lastSeen"`
	Node          string    `json:"node"`
}

// ProxyStatus is one xDS node of GET /v1/proxies.
type ProxyStatus struct {
	Node      string       `json:"node"`
	Connected bool         `json:"connected"`
	Streams   int          `json:"streams"`
	LastSeen  time.Time    `json:"lastSeen"`
	Types     []TypeStatus `json:"types"`
}

// TypeStatus is the state of one resource type on one node.
type TypeStatus struct {
	Type          string    `json:"type"`
	Delta         bool      `json:"delta"`
	SentVersion   string    `json:"sentVersion"`
	AckedVersion  string    `json:"ackedVersion"`
	NackedVersion string    `json:"nackedVersion,omitempty"`
	Nacks         uint64    `json:"nacks"`
	LastError     string    `json:"lastError,omitempty"`
	LastNack      time.Time `json:"lastNack,omitzero"`
}

// ApplyResult is the answer of POST /v1/policies/apply: "namespace/name"
// of each policy.
type ApplyResult struct {
	Changed   []string `json:"changed"`
	Unchanged []string `json:"unchanged"`
}

// Query narrows flows and violations: Segment is "namespace/name", a bare
// "namespace" (its segments), or empty (all); Limit 0 means no limit but
// the server's bounded tables.
type Query struct {
	Segment string
	Limit   int
}

func (q Query) values() url.Values {
	v := url.Values{}
	if q.Segment != "" {
		v.Set("segment", q.Segment)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Healthz checks GET /healthz.
func (c *Client) Healthz(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/healthz", nil, "", nil)
	return err
}

// Policies returns every policy with its status.
func (c *Client) Policies(ctx context.Context) ([]v1alpha1.SegmentPolicy, error) {
	var out []v1alpha1.SegmentPolicy
	return out, c.getJSON(ctx, "/v1/policies", nil, &out)
}

// Export returns the policies of namespace (all when "") as YAML, byte for
// byte as served.
func (c *Client) Export(ctx context.Context, namespace string) ([]byte, error) {
	v := url.Values{}
	if namespace != "" {
		v.Set("namespace", namespace)
	}
	return c.do(ctx, http.MethodGet, "/v1/policies/export", v, "", nil)
}

// Apply posts a YAML stream of policies; the server validates them all and
// applies all or none.
func (c *Client) Apply(ctx context.Context, yaml []byte) (ApplyResult, error) {
	var out ApplyResult
	b, err := c.do(ctx, http.MethodPost, "/v1/policies/apply", nil, "application/yaml", yaml)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("decode apply answer: %w", err)
	}
	return out, nil
}

// Segments returns every segment with its mode and counts.
func (c *Client) Segments(ctx context.Context) ([]Segment, error) {
	var out []Segment
	return out, c.getJSON(ctx, "/v1/segments", nil, &out)
}

// SetMode sets the mode of segment namespace/name.
func (c *Client) SetMode(ctx context.Context, namespace, name string, m v1alpha1.Mode) error {
	if err := checkName("namespace", namespace); err != nil {
		return err
	}
	if err := checkName("segment", name); err != nil {
		return err
	}
	return c.putMode(ctx, "/v1/segments/"+namespace+"/"+name+"/mode", m)
}

// SetNamespaceMode sets the default mode of the namespace's segments.
func (c *Client) SetNamespaceMode(ctx context.Context, namespace string, m v1alpha1.Mode) error {
	if err := checkName("namespace", namespace); err != nil {
		return err
	}
	return c.putMode(ctx, "/v1/namespaces/"+namespace+"/mode", m)
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// checkName refuses what is not a DNS label before it reaches a URL path.
func checkName(what, s string) error {
	if len(s) > 63 || !nameRE.MatchString(s) {
		return fmt.Errorf("%s %q is not a DNS label", what, s)
	}
	return nil
}

func (c *Client) putMode(ctx context.Context, path string, m v1alpha1.Mode) error {
	body, err := json.Marshal(map[string]string{"mode": string(m)})
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodPut, path, nil, "application/json", body)
	return err
}

// Flows returns aggregated flow records, newest first.
func (c *Client) Flows(ctx context.Context, q Query) ([]FlowRecord, error) {
	var out []FlowRecord
	return out, c.getJSON(ctx, "/v1/flows", q.values(), &out)
}

// Violations returns violation records, newest first.
func (c *Client) Violations(ctx context.Context, q Query) ([]FlowRecord, error) {
	var out []FlowRecord
	return out, c.getJSON(ctx, "/v1/violations", q.values(), &out)
}

// Proxies returns the xDS nodes and the versions they acknowledged.
func (c *Client) Proxies(ctx context.Context) ([]ProxyStatus, error) {
	var out []ProxyStatus
	return out, c.getJSON(ctx, "/v1/proxies", nil, &out)
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	b, err := c.do(ctx, http.MethodGet, path, q, "", nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// do sends one request and returns the body of a 2xx answer.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, contentType string, body []byte) ([]byte, error) {
	u := c.base.JoinPath(path)
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if len(b) > MaxResponse {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, path, MaxResponse)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Method: method, Path: path, Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
		var m struct {
			Error    string   `json:"error"`
			Problems []string `json:"problems"`
		}
		if json.Unmarshal(b, &m) == nil && m.Error != "" {
			e.Message, e.Problems = m.Error, m.Problems
		}
		if resp.StatusCode == http.StatusUnauthorized {
			e.Message += " (give the admin token: --token-file, BULKHEAD_TOKEN, or --state-dir of the control plane)"
		}
		return nil, e
	}
	return b, nil
}

// IsNotFound reports whether err is a 404 of the admin API.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}
