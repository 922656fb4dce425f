package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// The kafka suite: franz-go's kfake broker (no Kafka broker is packaged in
// Debian; the end-to-end tests' ./test/e2e/internal/kfakeserver) on
// kafkaPort, and kcat producing kafkaMessageSize-byte messages to
// kafkaTopic, one message per Produce request.
const (
	kafkaPort = 9092
	// kafkaTopic is the topic the policy allows producing to;
	// kafkaDeniedTopic one the broker has but the policy denies.
	kafkaTopic       = "bench"
	kafkaDeniedTopic = "denied"
	kafkaMessageSize = 100
	kafkaScenario    = "kafka produce 100 B, 1 msg/request (kcat)"
	// kfakePackage is the broker's command, built from the module.
	kfakePackage = "./test/e2e/internal/kfakeserver"
	// kcatDelivered starts each delivery report of kcat -v -v -P.
	kcatDelivered = "% Message delivered to partition "
	// kcatDenied is what kcat prints for the proxy's
	// TOPIC_AUTHORIZATION_FAILED.
	kcatDenied = "Topic authorization failed"
	// kafkaCheckLimit bounds one kcat run of a check.
	kafkaCheckLimit = 20 * time.Second
)

// kafkaProducerConf are kcat's librdkafka settings for the load: no
// lingering and one message per batch, so that every message is its own
// Produce request (one partition: one batch per request); acks=1, the
// broker answers each. No idempotence: no InitProducerId, and the Produce
// requests are all there is beyond ApiVersions and Metadata.
var kafkaProducerConf = []string{
	"-X", "linger.ms=0", "-X", "batch.num.messages=1", "-X", "acks=1",
	"-X", "enable.idempotence=false",
}

var kafkaSuite = suite{
	group: "kafka",
	ports: []*bulkheadv1.Port{{Port: kafkaPort, Protocol: "kafka"}},
	rules: kafkaRules,
	setup: func(ctx context.Context, b *bench) error { return b.setupKafka(ctx) },
	scenarios: func(b *bench) []scenario {
		return []scenario{{
			name: kafkaScenario, slug: "kafka-produce",
			group: "kafka", port: kafkaPort, unit: "req/s", cpuUnit: "µs/req", protocol: "kafka",
			requests: b.prof.KafkaMessages,
			run:      b.kcatLoad,
			check:    b.checkKafkaPolicy,
		}}
	},
	about: fmt.Sprintf("**Kafka.** The broker is franz-go's kfake (`%s`, one broker, in memory, pinned with the load generator) on port %d: no Kafka broker is packaged in Debian, so this one fake server stands in, lighter than a real broker; the rows compare the arms, not brokers. `kcat -P` (librdkafka) produces %d-byte messages to partition 0 of `%s` with `linger.ms=0`, `batch.num.messages=1` and `acks=1`, so that each message is one Produce request and its response (req/s = messages/s; librdkafka pipelines them on one connection); the harness counts kcat's delivery reports and times the run (kcat reports no latency, so p50/p99 are empty). Bulkhead's policy allows ApiVersions, Metadata and Produce to `%s` only; before each run a produce to `%s` must pass on every arm, and on the Bulkhead arm a produce to `%s` must fail with the proxy's TOPIC_AUTHORIZATION_FAILED.", kfakePackage, kafkaPort, kafkaMessageSize, kafkaTopic, kafkaTopic, kafkaTopic, kafkaDeniedTopic),
}

// kafkaRules allow the client what kcat's producer sends: ApiVersions, and
// Metadata and Produce of kafkaTopic only.
func kafkaRules(peers []*bulkheadv1.Peer) []*bulkheadv1.Rule {
	return []*bulkheadv1.Rule{{
		Name:  "bench/server/from-client-kafka-9092",
		Peers: peers,
		Ports: []*bulkheadv1.Port{{Port: kafkaPort, Protocol: "kafka"}},
		L7: []*bulkheadv1.L7Rule{
			{
				Verbs:     []string{"METADATA", "PRODUCE"},
				Resources: []*bulkheadv1.Pattern{{Kind: &bulkheadv1.Pattern_Exact{Exact: kafkaTopic}}},
			},
			// Messages that name no topic match only rules without
			// resource patterns: ApiVersions.
			{Verbs: []string{"APIVERSIONS"}},
		},
	}}
}

// setupKafka builds the kfake broker into b.dir, writes the load's
// messages there and starts the broker in the server, advertising the
// server's address (clients reconnect to the advertised broker: the
// proxied arms' redirect must catch that connection too).
func (b *bench) setupKafka(ctx context.Context) error {
	n := b.prof.KafkaMessages
	if n < 1 {
		return fmt.Errorf("profile %q: KafkaMessages %d, want at least 1", b.prof.Name, n)
	}
	if b.opts.ModuleDir == "" {
		return errors.New("the kafka suite needs ModuleDir to build " + kfakePackage)
	}
	b.progress("building %s", kfakePackage)
	bin, err := buildKfake(ctx, b.opts.ModuleDir, b.dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(b.kafkaMessages(), kafkaPayload(n), 0o644); err != nil {
		return fmt.Errorf("kafka messages: %w", err)
	}
	adv := b.target(kafkaPort).String()
	p, err := b.server.Start(ctx, "nice", b.pinned(loadCPU, bin, "-listen", "0.0.0.0:"+strconv.Itoa(kafkaPort),
		"-advertise", adv, "-topics", kafkaTopic+","+kafkaDeniedTopic)...)
	if err != nil {
		return err
	}
	return b.waitListen(ctx, p, kafkaPort)
}

// buildKfake builds the kfake broker of the module in moduleDir into dir
// and returns its path.
func buildKfake(ctx context.Context, moduleDir, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, toolLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), kfakePackage)
	cmd.Dir = moduleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", kfakePackage, err, clip(out))
	}
	return filepath.Join(dir, "kfakeserver"), nil
}

func (b *bench) kafkaMessages() string { return filepath.Join(b.dir, "kafka-messages") }

// kafkaPayload is n lines of kafkaMessageSize bytes each, numbered.
func kafkaPayload(n int) []byte {
	var buf bytes.Buffer
	buf.Grow(n * (kafkaMessageSize + 1))
	for i := range n {
		line := strconv.Itoa(i)
		buf.WriteString(line)
		buf.WriteString(strings.Repeat("x", max(0, kafkaMessageSize-len(line))))
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// kcatLoad produces the profile's KafkaMessages with kcat in the client,
// pinned to the load CPU, and counts its delivery reports.
func (b *bench) kcatLoad(ctx context.Context) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, toolLimit)
	defer cancel()
	args := append([]string{"-v", "-v", "-P", "-b", b.target(kafkaPort).String(), "-t", kafkaTopic, "-p", "0"},
		kafkaProducerConf...)
	args = append(args, "-X", "message.timeout.ms=30000", "-l", b.kafkaMessages())
	cmd := b.client.Command(ctx, "nice", b.pinned(loadCPU, "kcat", args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		return result{}, fmt.Errorf("kcat %s: %w: %s", strings.Join(args, " "), err, clip(stderr.Bytes()))
	}
	return parseKcatDeliveries(stderr.Bytes(), b.prof.KafkaMessages, elapsed)
}

// parseKcatDeliveries reads the standard error of kcat -v -v -P: one
// delivery report per message the broker acknowledged. Every one of the n
// messages must have been delivered; Ops is n (one Produce request each),
// Throughput n over elapsed. kcat measures no latency.
func parseKcatDeliveries(out []byte, n int, elapsed time.Duration) (result, error) {
	if elapsed <= 0 {
		return result{}, fmt.Errorf("kcat ran for %v", elapsed)
	}
	delivered := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, kcatDelivered):
			delivered++
		case strings.Contains(line, "Delivery failed") || strings.HasPrefix(line, "% ERROR"):
			return result{}, fmt.Errorf("kcat: %s", line)
		}
	}
	if err := sc.Err(); err != nil {
		return result{}, fmt.Errorf("kcat output: %w", err)
	}
	if delivered != n {
		return result{}, fmt.Errorf("kcat delivered %d of %d messages", delivered, n)
	}
	return result{Throughput: float64(n) / elapsed.Seconds(), Ops: float64(n), Elapsed: elapsed}, nil
}

// checkKafkaPolicy produces one message to kafkaTopic through arm, which
// must work, and on the Bulkhead arm one to kafkaDeniedTopic, which the
// proxy must refuse with TOPIC_AUTHORIZATION_FAILED.
func (b *bench) checkKafkaPolicy(ctx context.Context, arm Arm) error {
	if out, err := b.kcatProduceOne(ctx, kafkaTopic); err != nil {
		return fmt.Errorf("produce to %s: %w: %s", kafkaTopic, err, clip(out))
	}
	if arm != Bulkhead {
		return nil
	}
	out, err := b.kcatProduceOne(ctx, kafkaDeniedTopic)
	if err == nil || !strings.Contains(string(out), kcatDenied) {
		return fmt.Errorf("produce to %s through Bulkhead was not denied by the proxy (%v): %s", kafkaDeniedTopic, err, clip(out))
	}
	return nil
}

// kcatProduceOne produces one message to topic with kcat in the client and
// returns kcat's output.
func (b *bench) kcatProduceOne(ctx context.Context, topic string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, kafkaCheckLimit)
	defer cancel()
	args := append([]string{"-P", "-b", b.target(kafkaPort).String(), "-t", topic, "-p", "0"}, kafkaProducerConf...)
	cmd := b.client.Command(ctx, "kcat", append(args, "-X", "message.timeout.ms=10000")...)
	cmd.Stdin = strings.NewReader("probe\n")
	return cmd.CombinedOutput()
}
