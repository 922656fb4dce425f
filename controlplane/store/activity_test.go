package store

import (
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestActivityAndConditions(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	rule := v1alpha1.Rule{Name: "from-web-redis-6379", Origin: v1alpha1.OriginLearned,
		Ports: []v1alpha1.PortProtocol{{Port: 6379, Protocol: v1alpha1.ProtocolRedis}},
		Redis: &v1alpha1.RedisMatch{Commands: []string{"get"}}}
	if s.SetCondition("shop/cart", metav1.Condition{Type: "Promotion", Status: metav1.ConditionTrue, Reason: "X"}) {
		t.Error("SetCondition on a segment without policy succeeded")
	}
	for range 2 { // the second merge changes nothing and is not counted
		if _, err := s.MergeLearned("shop", "cart", Ingress, []v1alpha1.Rule{rule}); err != nil {
			t.Fatal(err)
		}
	}
	s.RecordHits([]Hit{{SegmentKey: "shop/cart", Rule: rule.Name, Count: 7, Last: time.Now()}})
	s.RecordViolations("shop/cart", 3)
	if got, want := s.Activity("shop/cart"), (Activity{Learned: 1, Violations: 3, Allowed: 7}); got != want {
		t.Errorf("Activity = %+v, want %+v", got, want)
	}
	if !s.SetCondition("shop/cart", metav1.Condition{Type: "Promotion", Status: metav1.ConditionTrue, Reason: "Promoted", Message: "m"}) {
		t.Fatal("SetCondition failed")
	}
	p, _ := s.Get("shop", "cart")
	if c := meta.FindStatusCondition(p.Status.Conditions, "Promotion"); c == nil || c.Reason != "Promoted" {
		t.Fatalf("conditions = %+v", p.Status.Conditions)
	}
	if out, err := s.Export(""); err != nil || len(out) == 0 || strings.Contains(string(out), "Promoted") {
		t.Errorf("export carries status: %v\n%s", err, out)
	}
	if err := s.Delete("shop", "cart"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMode("shop", "cart", v1alpha1.ModeMonitor); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Get("shop", "cart"); len(p.Status.Conditions) != 0 {
		t.Errorf("conditions survive a delete: %+v", p.Status.Conditions)
	}
}
