package flows

import "github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"

// Ingest takes flows that did not arrive on a Report stream — the access
// log service (controlplane/als) turns Envoy's access log entries into
// flows — through the same path as one batch of a Report stream:
// validation (invalid flows are dropped and counted as rejected),
// recording, learning, rule hits and violations. The error is what the
// batch would end a stream with: a missing node id or more than MaxBatch
// flows.
func (s *Server) Ingest(node string, flows []*bulkheadv1.Flow) (accepted, rejected int, err error) {
	var sum bulkheadv1.ReportSummary
	err = s.batch(&bulkheadv1.FlowBatch{Node: node, Flows: flows}, &sum)
	return int(sum.GetAccepted()), int(sum.GetRejected()), err
}
