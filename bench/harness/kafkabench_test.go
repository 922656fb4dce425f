package harness

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkhead-io/bulkhead/dataplane/enforce"
)

// kcatOut is the standard error of kcat 1.7 (librdkafka 2.x) run as
// kcat -v -v -P … -l file over a file of three messages.
const kcatOut = `% Setting producer input buffer max size to message.max.bytes value 1000000
% Message delivered to partition 0 (offset 43000) on broker 0
% Message delivered to partition 0 (offset 43001) on broker 0
% Message delivered to partition 0 (offset 43002) on broker 0
`

func TestParseKcatDeliveries(t *testing.T) {
	got, err := parseKcatDeliveries([]byte(kcatOut), 3, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := result{Throughput: 1500, Ops: 3, Elapsed: 2 * time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for name, tc := range map[string]struct {
		out     string
		n       int
		elapsed time.Duration
		err     string
	}{
		"one short": {kcatOut, 4, time.Second, "delivered 3 of 4"},
		"failed": {kcatOut + "% Delivery failed for message: Broker: Topic authorization failed\n", 3, time.Second,
			"Topic authorization failed"},
		"error":      {"% ERROR: Local: Broker transport failure\n", 1, time.Second, "transport failure"},
		"nothing":    {"", 1, time.Second, "delivered 0 of 1"},
		"no elapsed": {kcatOut, 3, 0, "ran for"},
	} {
		if _, err := parseKcatDeliveries([]byte(tc.out), tc.n, tc.elapsed); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.err)
		}
	}
}

func TestKafkaPayload(t *testing.T) {
	p := kafkaPayload(1000)
	lines := bytes.Split(bytes.TrimSuffix(p, []byte("\n")), []byte("\n"))
	if len(lines) != 1000 {
		t.Fatalf("%d lines, want 1000", len(lines))
	}
	for i, l := range lines {
		if len(l) != kafkaMessageSize {
			t.Fatalf("line %d: %d bytes, want %d", i, len(l), kafkaMessageSize)
		}
	}
}

// TestKafkaPolicy: the bench policy, compiled as the proxy does, lets the
// client produce to the bench topic and fetch its metadata, and denies a
// produce to the denied topic and any other API.
func TestKafkaPolicy(t *testing.T) {
	pol, client := cachedBenchPolicy(t)
	if got := pol.Protocol(kafkaPort); got != "kafka" {
		t.Fatalf("port %d protocol %q, want kafka", kafkaPort, got)
	}
	for _, tc := range []struct {
		verb, topic string
		want        enforce.Verdict
	}{
		{"ApiVersions", "", enforce.Allow},
		{"Metadata", "", enforce.Deny},
		{"Metadata", kafkaTopic, enforce.Allow},
		{"Produce", kafkaTopic, enforce.Allow},
		{"Produce", kafkaDeniedTopic, enforce.Deny},
		{"Produce", "", enforce.Deny},
		{"Metadata", kafkaDeniedTopic, enforce.Deny},
		{"Fetch", kafkaTopic, enforce.Deny},
		{"InitProducerId", "", enforce.Deny},
	} {
		if d := judge(t, pol, client, kafkaPort, tc.verb, tc.topic, "rdkafka"); d.Verdict != tc.want {
			t.Errorf("%s %q: %+v, want %v", tc.verb, tc.topic, d, tc.want)
		}
	}
}
