package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// The Kafka world: franz-go's kfake broker (no Kafka broker is packaged
// here; ./internal/kfakeserver) on api:9092 (declared "kafka"), seeded
// with the topics orders and payments and advertising api's address, so
// that every connection goes through bulkhead-proxy; web runs kcat and,
// from the test process through web's namespace, a franz-go client.
const (
	kafkaPort = 9092
	// kafkaClientID is the franz-go client's id; kcat's is rdkafka.
	kafkaClientID = "shop"
)

// startKfake returns a startFunc running the kfake broker.
func startKfake(bin string) startFunc {
	return func(ctx context.Context, h *lab.Host) (*lab.Proc, error) {
		adv := netip.AddrPortFrom(h.Addr(), kafkaPort).String()
		return h.Start(ctx, bin, "-listen", fmt.Sprintf("0.0.0.0:%d", kafkaPort), "-advertise", adv, "-topics", "orders,payments")
	}
}

// newKafkaEnv builds lab n around the broker bin (helperBin's kfakeserver,
// built before the test's clock starts).
func newKafkaEnv(t *testing.T, ctx context.Context, n int, bin string) *serverEnv {
	t.Helper()
	return newServerEnv(t, ctx, n, kafkaPort, v1alpha1.ProtocolKafka, startKfake(bin))
}

// kcat runs kcat from web against the broker with stdin and returns its
// output (standard output, then standard error) and exit code.
func kcat(t *testing.T, ctx context.Context, e *serverEnv, stdin string, args ...string) (string, string, int) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := e.Host(webHost).Command(tctx, "kcat", append([]string{"-b", e.ServerAddr().String()}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, er strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	var exit interface{ ExitCode() int }
	switch {
	case err == nil:
		return o.String(), er.String(), 0
	case tctx.Err() != nil:
		t.Fatalf("kcat %s: timed out\n%s%s", strings.Join(args, " "), o.String(), er.String())
	case errors.As(err, &exit):
		return o.String(), er.String(), exit.ExitCode()
	}
	t.Fatalf("kcat: %v", err)
	return "", "", -1
}

// kcatProduce produces lines to topic with kcat and fails the test unless
// it succeeds.
func kcatProduce(t *testing.T, ctx context.Context, e *serverEnv, what, topic string, lines ...string) {
	t.Helper()
	out, errOut, code := kcat(t, ctx, e, strings.Join(lines, "\n")+"\n", "-P", "-t", topic)
	if code != 0 {
		t.Fatalf("%s: kcat -P -t %s: exit %d\n%s%s", what, topic, code, out, errOut)
	}
}

// kcatConsume reads topic from the beginning with kcat, n messages, and
// returns them.
func kcatConsume(t *testing.T, ctx context.Context, e *serverEnv, what, topic string, n int) []string {
	t.Helper()
	out, errOut, code := kcat(t, ctx, e, "", "-C", "-t", topic, "-o", "beginning", "-c", fmt.Sprint(n), "-e")
	if code != 0 {
		t.Fatalf("%s: kcat -C -t %s: exit %d\n%s%s", what, topic, code, out, errOut)
	}
	return strings.Fields(out)
}

// kafkaClient is a franz-go client dialing from web through its namespace.
func kafkaClient(t *testing.T, e *serverEnv, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(e.ServerAddr().String()),
		kgo.ClientID(kafkaClientID),
		kgo.Dialer(e.Host(webHost).DialContext),
		kgo.RetryTimeout(5 * time.Second),
		kgo.RecordRetries(2),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// kafkaProduce produces one record to topic with cl and returns the error.
func kafkaProduce(ctx context.Context, cl *kgo.Client, topic, value string) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return cl.ProduceSync(pctx, &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr()
}

// kafkaRule is a rule discover learns for web: one Kafka API, its topics
// and client ids.
func kafkaRule(api string, topics []string, clients ...string) v1alpha1.Rule {
	return v1alpha1.Rule{
		Name:   "from-web-kafka-9092-" + strings.ToLower(api),
		Origin: v1alpha1.OriginLearned,
		Peers:  []v1alpha1.Peer{{Segment: webHost}},
		Ports:  []v1alpha1.PortProtocol{{Port: kafkaPort, Protocol: v1alpha1.ProtocolKafka}},
		Kafka:  &v1alpha1.KafkaMatch{APIs: []string{api}, Topics: topics, ClientIDs: clients},
	}
}

// TestKafka: in discover mode kcat producing to and consuming from orders
// (and a franz-go producer) become one learned rule per Kafka API. In
// protect the same traffic passes unchanged; producing to payments gets
// TOPIC_AUTHORIZATION_FAILED (kcat and franz-go) while the same franz-go
// client goes on producing to orders; `bulkhead violations` lists the
// denial. In monitor producing to payments works and is reported.
func TestKafka(t *testing.T) {
	needTools(t, "kcat")
	bin := helperBin(t, "kfakeserver")
	ctx := testCtx(t)
	e := newKafkaEnv(t, ctx, 44, bin)

	// Discover.
	kcatProduce(t, ctx, e, "discover", "orders", "o1", "o2")
	if got := kcatConsume(t, ctx, e, "discover", "orders", 2); strings.Join(got, " ") != "o1 o2" {
		t.Fatalf("discover: kcat -C read %q", got)
	}
	cl := kafkaClient(t, e)
	if err := kafkaProduce(ctx, cl, "orders", "o3"); err != nil {
		t.Fatalf("discover: franz-go produce to orders: %v", err)
	}
	cl.Close()
	waitIngress(t, ctx, e, kafkaLearned())

	// Protect.
	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeProtect)
	kcatProduce(t, ctx, e, "protect", "orders", "o4")
	if got := kcatConsume(t, ctx, e, "protect", "orders", 4); strings.Join(got, " ") != "o1 o2 o3 o4" {
		t.Errorf("protect: kcat -C read %q", got)
	}
	out, errOut, code := kcat(t, ctx, e, "p1\n", "-P", "-t", "payments")
	if code == 0 || !strings.Contains(out+errOut, "Topic authorization failed") {
		t.Errorf("protect: kcat -P -t payments: exit %d; want Topic authorization failed\n%s%s", code, out, errOut)
	}
	cl = kafkaClient(t, e)
	if err := kafkaProduce(ctx, cl, "orders", "o5"); err != nil {
		t.Fatalf("protect: franz-go produce to orders: %v", err)
	}
	if err := kafkaProduce(ctx, cl, "payments", "p2"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("protect: franz-go produce to payments: %v; want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if err := kafkaProduce(ctx, cl, "orders", "o6"); err != nil {
		t.Errorf("protect: franz-go produce to orders after the denial: %v", err)
	}
	cl.Close()
	if got := kcatConsume(t, ctx, e, "protect", "orders", 6); strings.Join(got, " ") != "o1 o2 o3 o4 o5 o6" {
		t.Errorf("protect: kcat -C read %q", got)
	}
	web := e.Host(webHost).Addr().String()
	v := waitViolation(t, ctx, e.Env, "produce to payments denied", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "PRODUCE" && r.Resource == "payments" && r.Aux == kafkaClientID && r.Verdict == "deny"
	})
	if v.Protocol != v1alpha1.ProtocolKafka || v.Reason != "l7_not_allowed" || v.Mode != "protect" || v.DstPort != kafkaPort {
		t.Errorf("the produce violation: %+v", v)
	}

	// Monitor.
	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeMonitor)
	kcatProduce(t, ctx, e, "monitor", "payments", "p3")
	if got := kcatConsume(t, ctx, e, "monitor", "payments", 1); strings.Join(got, " ") != "p3" {
		t.Errorf("monitor: kcat -C -t payments read %q; want p3 (nothing denied before reached the broker)", got)
	}
	waitViolation(t, ctx, e.Env, "produce to payments in monitor", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "PRODUCE" && r.Resource == "payments" && r.Verdict == "violation" && r.Mode == "monitor"
	})
	table, err := e.CLI(ctx, "violations", "-n", e.Namespace)
	if err != nil || !regexp.MustCompile(`kafka +PRODUCE payments \(rdkafka\) +deny +protect`).MatchString(table) ||
		!regexp.MustCompile(`kafka +PRODUCE payments \(shop\) +deny +protect`).MatchString(table) {
		t.Errorf("bulkhead violations does not list the denials of kcat and franz-go:\n%s", table)
	}
	e.serverAlive(t)
}

// kafkaLearned is what discover must teach: one rule per API, with the
// topics and client ids seen. kcat (rdkafka) and franz-go share
// ApiVersions, Metadata (on orders: neither lists every topic) and Produce;
// kcat's consumer adds ListOffsets and Fetch, franz-go's idempotent
// producer InitProducerId and its client metrics (KIP-714)
// GetTelemetrySubscriptions and PushTelemetry.
func kafkaLearned() []v1alpha1.Rule {
	orders := []string{"orders"}
	return []v1alpha1.Rule{
		kafkaRule("ApiVersions", nil, "rdkafka", kafkaClientID),
		kafkaRule("Fetch", orders, "rdkafka"),
		kafkaRule("GetTelemetrySubscriptions", nil, kafkaClientID),
		kafkaRule("InitProducerId", nil, kafkaClientID),
		kafkaRule("ListOffsets", orders, "rdkafka"),
		kafkaRule("Metadata", orders, "rdkafka", kafkaClientID),
		kafkaRule("Produce", orders, "rdkafka", kafkaClientID),
		kafkaRule("PushTelemetry", nil, kafkaClientID),
	}
}
