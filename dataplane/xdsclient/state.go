package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// policyEntry is the ProxyPolicy held, with its resource name and version.
type policyEntry struct {
	name, version string
	msg           *bulkheadv1.ProxyPolicy
}

// identityEntry is one Identity held.
type identityEntry struct {
	name, version string
	msg           *bulkheadv1.Identity
}

// state is a configuration: accepted, or a candidate built from a response.
// Entries are immutable once built, so states share them.
type state struct {
	policy     *policyEntry // nil until a ProxyPolicy is known
	identities map[string]*identityEntry
	// identityVersion is the system_version_info of the last accepted
	// Identity response.
	identityVersion string
}

// sortedIdentities returns the identities ordered by resource name.
func (s *state) sortedIdentities() []*bulkheadv1.Identity {
	names := slices.Sorted(maps.Keys(s.identities))
	out := make([]*bulkheadv1.Identity, len(names))
	for i, n := range names {
		out[i] = s.identities[n].msg
	}
	return out
}

// nackStorm tracks the last NACKed response of one type.
type nackStorm struct {
	sum   uint64 // content fingerprint of the NACKed response
	delay time.Duration
}

var stormSeed = maphash.MakeSeed()

// fingerprint hashes what makes two responses the same: type, resources
// (name, version, bytes) and removals; not the nonce.
func fingerprint(resp *discovery.DeltaDiscoveryResponse) uint64 {
	var h maphash.Hash
	h.SetSeed(stormSeed)
	h.WriteString(resp.GetTypeUrl())
	h.WriteByte(0)
	h.WriteString(resp.GetSystemVersionInfo())
	for _, r := range resp.GetResources() {
		h.WriteByte(1)
		h.WriteString(r.GetName())
		h.WriteByte(0)
		h.WriteString(r.GetVersion())
		h.WriteByte(0)
		h.WriteString(r.GetResource().GetTypeUrl())
		h.WriteByte(0)
		h.Write(r.GetResource().GetValue())
	}
	for _, n := range resp.GetRemovedResources() {
		h.WriteByte(2)
		h.WriteString(n)
	}
	return h.Sum64()
}

// handle judges one response and returns the ACK or NACK to send. It returns
// false only when ctx ended while it waited out a NACK storm.
func (c *Client) handle(ctx context.Context, resp *discovery.DeltaDiscoveryResponse) (*discovery.DeltaDiscoveryRequest, bool) {
	typ := resp.GetTypeUrl()
	next, err := c.candidate(resp)
	if err == nil && next.policy != nil {
		if aerr := c.cfg.Apply(next.policy.msg, next.sortedIdentities()); aerr != nil {
			err = fmt.Errorf("apply: %w", aerr)
		}
	}
	if err != nil {
		return c.nack(ctx, resp, err)
	}

	delete(c.storm, typ)
	prev := c.st
	c.st = next
	c.mu.Lock()
	c.status.Acks++
	if next.policy != nil {
		c.status.PolicyVersion = next.policy.version
	}
	c.status.IdentityVersion = next.identityVersion
	c.mu.Unlock()

	if typ == PolicyTypeURL {
		c.log.Info("xds policy accepted", "version", versionOf(next.policy), "systemVersion", resp.GetSystemVersionInfo())
	} else {
		c.log.Debug("xds identities accepted", "systemVersion", resp.GetSystemVersionInfo(),
			"updated", len(resp.GetResources()), "removed", len(resp.GetRemovedResources()), "total", len(next.identities))
	}
	if next.policy != nil && c.cfg.CacheDir != "" && !sameConfig(&prev, &next) {
		if err := writeCache(c.cfg.CacheDir, next.policy, next.identities); err != nil {
			c.log.Error("persisting xds configuration", "err", err)
			c.setLastError(err.Error())
		}
	}
	return &discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}, true
}

// sameConfig reports whether two states hold the same entries.
func sameConfig(a, b *state) bool {
	if a.policy != b.policy || len(a.identities) != len(b.identities) {
		return false
	}
	for n, e := range a.identities {
		if b.identities[n] != e {
			return false
		}
	}
	return true
}

func versionOf(p *policyEntry) string {
	if p == nil {
		return ""
	}
	return p.version
}

// nack counts and logs a refused response and builds the NACK, first waiting
// when the same response was just refused.
func (c *Client) nack(ctx context.Context, resp *discovery.DeltaDiscoveryResponse, cause error) (*discovery.DeltaDiscoveryRequest, bool) {
	typ := resp.GetTypeUrl()
	sum := fingerprint(resp)
	if s := c.storm[typ]; s != nil && s.sum == sum {
		c.log.Warn("xds server resent a refused response, waiting before refusing it again", "type", typ, "wait", s.delay)
		if !sleep(ctx, s.delay) {
			return nil, false
		}
		s.delay = min(2*s.delay, nackDelayMax)
	} else {
		c.storm[typ] = &nackStorm{sum: sum, delay: nackDelayMin}
	}

	msg := cause.Error()
	if len(msg) > maxErrorDetail {
		msg = msg[:maxErrorDetail]
	}
	c.mu.Lock()
	c.status.Nacks++
	c.status.LastError = msg
	c.mu.Unlock()
	c.log.Warn("xds response refused", "type", typ, "systemVersion", resp.GetSystemVersionInfo(), "err", cause)
	return &discovery.DeltaDiscoveryRequest{
		TypeUrl:       typ,
		ResponseNonce: resp.GetNonce(),
		ErrorDetail:   &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: msg},
	}, true
}

// candidate returns the accepted state with the response applied, or why the
// response is refused.
func (c *Client) candidate(resp *discovery.DeltaDiscoveryResponse) (state, error) {
	next := c.st
	switch typ := resp.GetTypeUrl(); typ {
	case PolicyTypeURL:
		for _, name := range resp.GetRemovedResources() {
			if name == c.cfg.Node && next.policy != nil {
				c.log.Warn("xds server removed this node's policy; keeping the last one in force")
			}
		}
		seen := false
		for _, r := range resp.GetResources() {
			if r.GetName() != c.cfg.Node {
				return state{}, fmt.Errorf("proxy policy %q: not this node's (%q)", trunc(r.GetName()), c.cfg.Node)
			}
			if seen {
				return state{}, fmt.Errorf("proxy policy %q: sent twice", r.GetName())
			}
			seen = true
			msg := &bulkheadv1.ProxyPolicy{}
			if err := unmarshalResource(r, typ, msg); err != nil {
				return state{}, err
			}
			next.policy = &policyEntry{name: r.GetName(), version: r.GetVersion(), msg: msg}
		}
	case IdentityTypeURL:
		ids := maps.Clone(c.st.identities)
		for _, name := range resp.GetRemovedResources() {
			delete(ids, name)
		}
		updated := make(map[string]struct{}, len(resp.GetResources()))
		for _, r := range resp.GetResources() {
			name := r.GetName()
			if name == "" {
				return state{}, errors.New("identity without a name")
			}
			if _, dup := updated[name]; dup {
				return state{}, fmt.Errorf("identity %q: sent twice", trunc(name))
			}
			updated[name] = struct{}{}
			msg := &bulkheadv1.Identity{}
			if err := unmarshalResource(r, typ, msg); err != nil {
				return state{}, err
			}
			ids[name] = &identityEntry{name: name, version: r.GetVersion(), msg: msg}
		}
		if len(ids) > maxIdentities {
			return state{}, fmt.Errorf("%d identities: more than %d", len(ids), maxIdentities)
		}
		next.identities = ids
		next.identityVersion = resp.GetSystemVersionInfo()
	default:
		return state{}, fmt.Errorf("unexpected resource type %q", trunc(typ))
	}
	return next, nil
}

// unmarshalResource decodes the body of r, which must be of type typ.
func unmarshalResource(r *discovery.Resource, typ string, msg proto.Message) error {
	body := r.GetResource()
	if body == nil {
		return fmt.Errorf("resource %q: no body", trunc(r.GetName()))
	}
	if body.GetTypeUrl() != typ {
		return fmt.Errorf("resource %q: type %q in a %s response", trunc(r.GetName()), trunc(body.GetTypeUrl()), typ)
	}
	if err := proto.Unmarshal(body.GetValue(), msg); err != nil {
		return fmt.Errorf("resource %q: %w", trunc(r.GetName()), err)
	}
	return nil
}

// trunc bounds a server-supplied string in an error message.
func trunc(s string) string {
	const n = 128
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
