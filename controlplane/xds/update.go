package xds

import (
	"errors"

	"github.com/bulkhead-io/bulkhead/controlplane/compile"
)

// Update serves a compile output: identities first (so that a policy naming
// a new peer finds its identity already sent), then proxy policies. Only what
// changed is pushed (see SetIdentities and SetProxyPolicies). The Server
// keeps out's messages: callers must not modify them afterwards.
func (s *Server) Update(out *compile.Output) error {
	if out == nil {
		return errors.New("update: nil compile output")
	}
	if err := s.SetIdentities(out.Identities); err != nil {
		return err
	}
	return s.SetProxyPolicies(out.Proxies)
}
