package run

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
	"github.com/bulkhead-io/bulkhead/controlplane/learn"
)

// newLearner is the Learner of the flow and access-log servers: its refusals
// (spec.learning) counted on reg and listed as violations with reason
// "learn_refused:<why>" (GET /v1/violations, bulkhead violations).
func newLearner(st learn.Store, rec *flows.Recorder, reg prometheus.Registerer, log *slog.Logger) *learn.Learner {
	return learn.NewWithOptions(st, log.With("component", "learn"), learn.Options{
		Registerer: reg,
		Refused: func(node string, f *bulkheadv1.Flow, reason string) {
			rec.AddViolation(node, f, flows.ReasonLearnRefused+":"+reason)
		},
	})
}
