package kafka

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// No Kafka broker is packaged for Debian: these tests run franz-go's kfake
// broker inside the test, and the real clients kcat (librdkafka) and
// franz-go talk to it through relay, a small proxy that frames both
// directions with this package's parsers and answers the requests a test
// denies with Deny's reply, as bulkhead-proxy does.

// advertised makes kfake advertise the relay's address instead of its own,
// so that clients reach every broker through the relay.
type advertised struct {
	net.Listener
	addr net.Addr
}

func (l advertised) Addr() net.Addr { return l.addr }

// relay is a framing proxy in front of kfake.
type relay struct {
	t       *testing.T
	ln      net.Listener
	backend string
	proto   l7.Protocol
	deny    func(f *l7.Frame) bool

	mu    sync.Mutex
	conns []*relayConn
	wg    sync.WaitGroup
}

// relayConn is one relayed connection and what its parser framed.
type relayConn struct {
	pmu       sync.Mutex // serialises the parser, as the proxy does
	p         l7.Parser
	cond      *sync.Cond // signalled when a reply completes
	forwarded int        // requests forwarded that await a reply
	replied   int
	denied    int
	verbs     []string
	err       error
	wmu       sync.Mutex // serialises writes to the client
}

// startKafka starts a kfake cluster behind a relay and returns the relay.
func startKafka(t *testing.T, deny func(f *l7.Frame) bool) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, ln: ln, proto: Protocol(), deny: deny}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders", "secret"),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			l, err := net.Listen(network, "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			r.backend = l.Addr().String()
			return advertised{l, ln.Addr()}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(func() {
		ln.Close()
		c.Close()
		r.wg.Wait()
	})
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", r.backend)
		if err != nil {
			c.Close()
			continue
		}
		rc := &relayConn{p: r.proto.New()}
		rc.cond = sync.NewCond(&rc.pmu)
		r.mu.Lock()
		r.conns = append(r.conns, rc)
		r.mu.Unlock()
		r.wg.Add(2)
		go func() {
			defer r.wg.Done()
			rc.fail(r.requests(rc, c, up))
			up.Close()
			c.Close()
		}()
		go func() {
			defer r.wg.Done()
			rc.fail(r.replies(rc, up, c))
			up.Close()
			c.Close()
		}()
	}
}

func (rc *relayConn) fail(err error) {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return
	}
	var ne net.Error
	if errors.As(err, &ne) || strings.Contains(err.Error(), "reset by peer") || strings.Contains(err.Error(), "broken pipe") {
		return
	}
	rc.pmu.Lock()
	if rc.err == nil {
		rc.err = err
	}
	rc.cond.Broadcast()
	rc.pmu.Unlock()
}

// pump reads src into a growing buffer and hands the unconsumed bytes to
// handle, which returns how many it consumed.
func pump(src net.Conn, handle func(buf []byte) (int, error)) error {
	buf := make([]byte, 0, 64<<10)
	chunk := make([]byte, 32<<10)
	for {
		n, err := src.Read(chunk)
		buf = append(buf, chunk[:n]...)
		used, herr := handle(buf)
		if herr != nil {
			return herr
		}
		buf = append(buf[:0], buf[used:]...)
		if err != nil {
			return err
		}
	}
}

func (r *relay) requests(rc *relayConn, client, up net.Conn) error {
	var f l7.Frame
	dropping := false
	return pump(client, func(buf []byte) (int, error) {
		off := 0
		for off < len(buf) {
			rc.pmu.Lock()
			op, n, err := rc.p.Parse(l7.DirRequest, buf[off:], &f)
			if err != nil || op == l7.OpMore {
				rc.pmu.Unlock()
				return off, err
			}
			if op == l7.OpSkip {
				rc.pmu.Unlock()
				if !dropping {
					if _, err := up.Write(buf[off : off+n]); err != nil {
						return off, err
					}
				}
				off += n
				continue
			}
			rc.verbs = append(rc.verbs, string(f.Verb))
			dropping = r.deny != nil && r.deny(&f)
			if !dropping {
				if !f.NoReply {
					rc.forwarded++
				}
				rc.pmu.Unlock()
				if _, err := up.Write(buf[off : off+n]); err != nil {
					return off, err
				}
				off += n
				continue
			}
			out := r.proto.Deny(nil, &f, "denied by test")
			rc.p.(l7.DenyObserver).Denied(&f)
			rc.denied++
			// The deny reply goes after the replies to the requests
			// forwarded before it.
			for rc.replied < rc.forwarded && rc.err == nil {
				rc.cond.Wait()
			}
			rc.pmu.Unlock()
			if len(out) > 0 {
				rc.wmu.Lock()
				_, err := client.Write(out)
				rc.wmu.Unlock()
				if err != nil {
					return off, err
				}
			}
			off += n
		}
		return off, nil
	})
}

func (r *relay) replies(rc *relayConn, up, client net.Conn) error {
	var f l7.Frame
	return pump(up, func(buf []byte) (int, error) {
		off := 0
		for off < len(buf) {
			rc.pmu.Lock()
			op, n, err := rc.p.Parse(l7.DirReply, buf[off:], &f)
			rc.pmu.Unlock()
			if err != nil || op == l7.OpMore {
				return off, err
			}
			rc.wmu.Lock()
			_, werr := client.Write(buf[off : off+n])
			rc.wmu.Unlock()
			if werr != nil {
				return off, werr
			}
			off += n
			if op == l7.OpFrame {
				rc.pmu.Lock()
				rc.replied++
				rc.cond.Broadcast()
				rc.pmu.Unlock()
			}
		}
		return off, nil
	})
}

// check fails the test on a parser error and on connections whose replies
// outnumber their requests or lag by more than the one request a client
// may leave in flight when it closes (a long-polling Fetch). It returns
// every verb framed.
func (r *relay) check(t *testing.T) map[string]int {
	t.Helper()
	// Let the relay see the connections close.
	deadline := time.Now().Add(5 * time.Second)
	verbs := map[string]int{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, rc := range r.conns {
		rc.pmu.Lock()
		for rc.replied < rc.forwarded-1 && time.Now().Before(deadline) {
			rc.pmu.Unlock()
			time.Sleep(10 * time.Millisecond)
			rc.pmu.Lock()
		}
		if rc.err != nil {
			t.Errorf("connection %d: %v", i, rc.err)
		}
		if rc.replied > rc.forwarded || rc.replied < rc.forwarded-1 {
			t.Errorf("connection %d: %d requests awaiting replies, %d replies (verbs %v)", i, rc.forwarded, rc.replied, rc.verbs)
		}
		for _, v := range rc.verbs {
			verbs[v]++
		}
		rc.pmu.Unlock()
	}
	return verbs
}

func kcat(t *testing.T, ctx context.Context, stdin string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat not installed (apt-get install kcat)")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestKcatThroughTheParser runs kcat's metadata listing, producer and
// consumer against kfake through the relay: every exchange frames one
// reply per request.
func TestKcatThroughTheParser(t *testing.T) {
	r := startKafka(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := kcat(t, ctx, "", "-b", r.addr(), "-L"); err != nil || !strings.Contains(out, `topic "orders" with 3 partitions`) {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
	if out, err := kcat(t, ctx, "one\ntwo\n", "-b", r.addr(), "-P", "-t", "orders", "-p", "0"); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	out, err := kcat(t, ctx, "", "-b", r.addr(), "-C", "-t", "orders", "-p", "0", "-o", "beginning", "-c", "2", "-e")
	if err != nil || out != "one\ntwo\n" {
		t.Fatalf("kcat -C: %v\n%q", err, out)
	}
	verbs := r.check(t)
	for _, v := range []string{"ApiVersions", "Metadata", "Produce", "Fetch"} {
		if verbs[v] == 0 {
			t.Errorf("no %s framed: %v", v, verbs)
		}
	}
}

// TestKcatDenied: kcat reports the deny reply of a Produce to a topic the
// relay denies as Kafka's own authorization error.
func TestKcatDenied(t *testing.T) {
	r := startKafka(t, namesTopic("Produce", "secret"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, _ := kcat(t, ctx, "leak\n", "-b", r.addr(), "-P", "-t", "secret", "-p", "0")
	if !strings.Contains(out, "Topic authorization failed") {
		t.Fatalf("kcat -P to a denied topic:\n%s", out)
	}
	if out, err := kcat(t, ctx, "fine\n", "-b", r.addr(), "-P", "-t", "orders", "-p", "0"); err != nil {
		t.Fatalf("kcat -P to an allowed topic: %v\n%s", err, out)
	}
	r.check(t)
}

// namesTopic returns a deny function for requests of verb naming topic.
func namesTopic(verb, topic string) func(f *l7.Frame) bool {
	return func(f *l7.Frame) bool {
		if string(f.Verb) != verb {
			return false
		}
		found := false
		f.Resources(func(r []byte) bool {
			found = string(r) == topic
			return !found
		})
		return found
	}
}

func newClient(t *testing.T, r *relay, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.addr()), kgo.ClientID("bulkhead-test"),
		kgo.RetryTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestFranzGoThroughTheParser runs a franz-go producer, consumer group and
// admin requests through the relay.
func TestFranzGoThroughTheParser(t *testing.T) {
	r := startKafka(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prod := newClient(t, r)
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("a")},
		&kgo.Record{Topic: "secret", Value: []byte("b")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons := newClient(t, r, kgo.ConsumeTopics("orders", "secret"), kgo.ConsumerGroup("g"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for n := 0; n < 2; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		n += fs.NumRecords()
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	ct := kmsg.NewPtrCreateTopicsRequest()
	topic := kmsg.NewCreateTopicsRequestTopic()
	topic.Topic, topic.NumPartitions, topic.ReplicationFactor = "created", 1, 1
	ct.Topics = append(ct.Topics, topic)
	resp, err := ct.RequestWith(ctx, prod)
	if err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create topics: %v %+v", err, resp)
	}
	cons.Close()
	prod.Close()
	verbs := r.check(t)
	for _, v := range []string{"ApiVersions", "Metadata", "Produce", "Fetch", "FindCoordinator", "JoinGroup",
		"SyncGroup", "OffsetCommit", "OffsetFetch", "CreateTopics"} {
		if verbs[v] == 0 {
			t.Errorf("no %s framed: %v", v, verbs)
		}
	}
}

// TestFranzGoDenied sends deny replies to a real franz-go client: a
// Produce, a Fetch and a CreateTopics naming a denied topic each surface
// TOPIC_AUTHORIZATION_FAILED, and the client goes on working. franz-go
// names topics by id (Produce v13, Fetch v13+): the relay's parsers learn
// the ids from the Metadata replies they frame.
func TestFranzGoDenied(t *testing.T) {
	deny := func(f *l7.Frame) bool {
		found := false
		f.Resources(func(r []byte) bool {
			found = strings.HasPrefix(string(r), "secret")
			return !found
		})
		return found && string(f.Verb) != "Metadata"
	}
	r := startKafka(t, deny)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, r)

	err := cl.ProduceSync(ctx, &kgo.Record{Topic: "secret", Value: []byte("leak")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("produce to a denied topic: %v", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("fine")}).FirstErr(); err != nil {
		t.Fatalf("produce after a denial: %v", err)
	}

	ct := kmsg.NewPtrCreateTopicsRequest()
	topic := kmsg.NewCreateTopicsRequestTopic()
	topic.Topic, topic.NumPartitions, topic.ReplicationFactor = "secret-2", 1, 1
	ct.Topics = append(ct.Topics, topic)
	resp, err := ct.RequestWith(ctx, cl)
	if err != nil || kerr.ErrorForCode(resp.Topics[0].ErrorCode) != kerr.TopicAuthorizationFailed ||
		resp.Topics[0].Topic != "secret-2" {
		t.Fatalf("create a denied topic: %v %+v", err, resp)
	}

	// acks=0: the client expects no reply and gets none; the connection
	// goes on.
	fire := newClient(t, r, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	if err := fire.ProduceSync(ctx, &kgo.Record{Topic: "secret", Value: []byte("x")},
		&kgo.Record{Topic: "orders", Value: []byte("y")}).FirstErr(); err != nil {
		t.Fatalf("acks=0 produce: %v", err)
	}
	if err := fire.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("z")}).FirstErr(); err != nil {
		t.Fatalf("acks=0 produce after a silent denial: %v", err)
	}

	cons := newClient(t, r, kgo.ConsumeTopics("secret"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var ferr error
	for ferr == nil {
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		fs := cons.PollFetches(pctx)
		pcancel()
		for _, e := range fs.Errors() {
			if errors.Is(e.Err, kerr.TopicAuthorizationFailed) {
				ferr = e.Err
			} else if e.Err != nil && !errors.Is(e.Err, context.DeadlineExceeded) {
				t.Fatalf("fetch error %v", e.Err)
			}
		}
		if ctx.Err() != nil {
			t.Fatal("no TOPIC_AUTHORIZATION_FAILED from fetching a denied topic")
		}
	}
	cons.Close()

	ok := newClient(t, r, kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := ok.PollFetches(ctx)
	if err := fs.Err0(); err != nil || fs.NumRecords() == 0 {
		t.Fatalf("fetch an allowed topic: %v, %d records", err, fs.NumRecords())
	}
	ok.Close()
	cl.Close()
	fire.Close()

	denied := 0
	r.mu.Lock()
	for _, rc := range r.conns {
		rc.pmu.Lock()
		denied += rc.denied
		rc.pmu.Unlock()
	}
	r.mu.Unlock()
	if denied < 4 {
		t.Errorf("%d denials", denied)
	}
	verbs := r.check(t)
	if !slices.ContainsFunc([]string{"Produce", "Fetch", "CreateTopics"}, func(v string) bool { return verbs[v] > 0 }) {
		t.Errorf("verbs %v", verbs)
	}
}
