package agent

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestPprofBehindFlag: /debug/pprof/ is served only when Config.Pprof is
// set.
func TestPprofBehindFlag(t *testing.T) {
	for _, on := range []bool{false, true} {
		a := &agent{cfg: Config{Pprof: on}}
		h := a.handler(prometheus.NewRegistry())
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/cmdline"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			if rec.Code != want {
				t.Errorf("Pprof=%v: GET %s = %d, want %d", on, path, rec.Code, want)
			}
		}
	}
}
