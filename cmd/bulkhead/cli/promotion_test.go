package cli

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/admin"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/controlplane/flows"
	"github.com/bulkhead-io/bulkhead/controlplane/promote"
	"github.com/bulkhead-io/bulkhead/controlplane/store"
)

// TestPromotion runs the promotion commands against the real admin API, store
// and promoter.
func TestPromotion(t *testing.T) {
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cart := redisPolicy("shop", "cart", v1alpha1.ModeDiscover)
	cart.Spec.Promotion = &v1alpha1.Promotion{Enabled: true}
	if _, err := st.Apply([]*v1alpha1.SegmentPolicy{cart, redisPolicy("shop", "plain", v1alpha1.ModeDiscover)}); err != nil {
		t.Fatal(err)
	}
	p := promote.New(st, nil, promote.Options{Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }})
	h := admin.WithPromotions(admin.NewHandler(admin.Deps{Store: st, Flows: flows.NewRecorder(flows.Options{})}), p, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	vetoed := func(name string) bool {
		pol, ok := st.Get("shop", name)
		return ok && pol.Spec.Promotion != nil && pol.Spec.Promotion.Vetoed
	}

	if code, out, errs := run(t, srv, "", "promotions"); code != 0 || out != "No promotions yet.\n" {
		t.Fatalf("promotions: %d %q %q", code, out, errs)
	}
	// A mode set by a person vetoes an enabled promotion, and only that.
	if code, _, errs := run(t, srv, "", "mode", "set", "plain", "protect", "-n", "shop"); code != 0 || vetoed("plain") {
		t.Fatalf("mode set plain: %d %q vetoed=%v", code, errs, vetoed("plain"))
	}
	if pol, _ := st.Get("shop", "plain"); pol.Spec.Promotion != nil {
		t.Errorf("mode set added spec.promotion to a policy without: %+v", pol.Spec.Promotion)
	}
	if code, _, errs := run(t, srv, "", "mode", "set", "cart", "monitor", "-n", "shop"); code != 0 || !vetoed("cart") {
		t.Fatalf("mode set cart: %d %q vetoed=%v", code, errs, vetoed("cart"))
	}
	if m := st.EffectiveMode("shop", "cart"); m != v1alpha1.ModeMonitor {
		t.Errorf("mode of cart = %s", m)
	}
	// Veto by command.
	if code, out, errs := run(t, srv, "", "promotion", "veto", "shop/plain"); code != 0 || !vetoed("plain") || !strings.Contains(out, "shop/plain vetoed") {
		t.Fatalf("promotion veto: %d %q %q", code, out, errs)
	}
	if code, _, errs := run(t, srv, "", "promotion", "veto", "nope", "-n", "shop"); code == 0 || !strings.Contains(errs, "no policy") {
		t.Fatalf("veto of an unknown segment: %d %q", code, errs)
	}
	code, out, errs := run(t, srv, "", "promotions", "-o", "json")
	var recs []promote.Record
	if code != 0 || json.Unmarshal([]byte(out), &recs) != nil {
		t.Fatalf("promotions -o json: %d %q %q", code, out, errs)
	}
	if len(recs) != 2 || recs[0].Segment != "shop/plain" || recs[1].Segment != "shop/cart" || recs[1].From != v1alpha1.ModeMonitor || recs[0].Reason != promote.ReasonVetoed {
		t.Fatalf("records = %+v", recs)
	}
	if code, out, _ := run(t, srv, "", "promotions"); code != 0 || !strings.Contains(out, "SEGMENT") || !strings.Contains(out, "shop/cart") {
		t.Fatalf("promotions table: %d %q", code, out)
	}
}
