package run

import (
	"net/http"

	"github.com/bulkhead-io/bulkhead/controlplane/admin"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
)

// withMap serves GET /v1/map (the segment map) from the recorded flows and
// the latest compiled segments.
func withMap(next http.Handler, rec *flows.Recorder, c *compiler) http.Handler {
	return admin.WithMap(next, admin.MapDeps{Flows: rec, Segments: c.segments})
}
