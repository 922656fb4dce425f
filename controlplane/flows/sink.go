package flows

import "github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"

// Sink receives every batch of valid flows after the Recorder recorded it
// (controlplane/history keeps them on disk). Add is called on the report
// stream's goroutine and must not keep flows beyond the call nor block for
// long.
type Sink interface {
	Add(node string, flows []*bulkheadv1.Flow)
}

// AddSink makes s receive every batch from now on. Call it before the
// Server is registered on a gRPC server (it is not synchronised with
// Report).
func (s *Server) AddSink(k Sink) {
	if k != nil {
		s.sinks = append(s.sinks, k)
	}
}
