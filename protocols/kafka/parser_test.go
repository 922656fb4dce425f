package kafka

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
	"github.com/bulkhead-io/bulkhead/protocols/l7/l7test"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// result is one Parse answer with its Frame copied into plain values.
type result struct {
	Op        l7.Op
	N         int
	Err       error
	Dir       l7.Dir
	Verb      string
	Resources string // comma-separated
	Overflow  bool
	Aux       string
	Args      int
	NoReply   bool
}

func (r result) String() string {
	if r.Err != nil {
		return fmt.Sprintf("error %v", r.Err)
	}
	if r.Op == l7.OpMore {
		return fmt.Sprintf("more %d", r.N)
	}
	return fmt.Sprintf("%v %d {%v verb=%q res=%q overflow=%v aux=%q args=%#x noreply=%v}",
		r.Op, r.N, r.Dir, r.Verb, r.Resources, r.Overflow, r.Aux, r.Args, r.NoReply)
}

func resultOf(op l7.Op, n int, err error, f *l7.Frame) result {
	if err != nil {
		return result{Err: err}
	}
	if op == l7.OpMore {
		return result{Op: op, N: n}
	}
	var res []string
	f.Resources(func(r []byte) bool { res = append(res, string(r)); return true })
	return result{Op: op, N: n, Dir: f.Dir, Verb: string(f.Verb), Resources: strings.Join(res, ","),
		Overflow: f.Overflow, Aux: string(f.Aux), Args: f.Args, NoReply: f.NoReply}
}

// parse runs one Parse call and checks what must hold for every answer.
func parse(t testing.TB, p *Parser, dir l7.Dir, data []byte) result {
	t.Helper()
	var f l7.Frame
	op, n, err := p.Parse(dir, data, &f)
	checkAnswer(t, dir, data, op, n, err, &f)
	return resultOf(op, n, err, &f)
}

func checkAnswer(t testing.TB, dir l7.Dir, data []byte, op l7.Op, n int, err error, f *l7.Frame) {
	t.Helper()
	// Verb and topics may be the parser's own (names of API keys, topics
	// resolved from ids); Aux is a view of the message.
	l7test.Check{ViewOK: func(field string, msg, v []byte) bool {
		return field != "aux" || l7test.Within(msg, v)
	}}.Answer(t, dir, data, op, n, err, f)
	if err == nil && op != l7.OpMore && dir == l7.DirReply && (len(f.Verb) > 0 || f.Resource != nil) {
		t.Fatalf("%x: reply frame with verb %q resource %q", data, f.Verb, f.Resource)
	}
}

func (r result) Answer() (l7.Op, int, error) { return r.Op, r.N, r.Err }

// parser is p's checked Parse in one direction, for the l7test drivers.
func parser(p *Parser, dir l7.Dir) l7test.ParseFunc[result] {
	return func(t testing.TB, data []byte) result { return parse(t, p, dir, data) }
}

func stream(t testing.TB, p *Parser, dir l7.Dir, data []byte, ends []int) []result {
	t.Helper()
	return l7test.Stream(t, parser(p, dir), data, ends)
}

// feed parses the whole of data as one chunk.
func feed(t testing.TB, p *Parser, dir l7.Dir, data []byte) []result {
	t.Helper()
	return stream(t, p, dir, data, []int{len(data)})
}

// normalize reduces answers to messages: a frame with the skips that
// follow it (request bodies) or precede it (reply pieces) folded into its
// length N, so that streams cut differently compare equal. OpMore keeps
// no count: it depends on where the stream ends.
func normalize(dir l7.Dir, rs []result) []result {
	var out []result
	skipped := 0
	for _, r := range rs {
		switch {
		case r.Err != nil || r.Op == l7.OpMore:
			if r.Op == l7.OpMore {
				r.N = 0
			}
			out = append(out, r)
		case r.Op == l7.OpSkip && dir == l7.DirRequest && len(out) > 0:
			out[len(out)-1].N += r.N
		case r.Op == l7.OpSkip:
			skipped += r.N
		default:
			r.N += skipped
			skipped = 0
			out = append(out, r)
		}
	}
	return out
}

func frames(rs []result) (n int) {
	for _, r := range rs {
		if r.Op == l7.OpFrame {
			n++
		}
	}
	return n
}

// req builds a request with kmsg.
func req(r kmsg.Request, v int16, corr int32, clientID string) []byte {
	return encodeRequest(r, v, corr, clientID)
}

func apiVersions(v int16, corr int32) []byte {
	r := kmsg.NewPtrApiVersionsRequest()
	r.ClientSoftwareName, r.ClientSoftwareVersion = "test", "1.0"
	return req(r, v, corr, "app")
}

func metadata(v int16, corr int32, topics ...string) []byte {
	r := kmsg.NewPtrMetadataRequest()
	if topics != nil {
		r.Topics = []kmsg.MetadataRequestTopic{}
	}
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		r.Topics = append(r.Topics, rt)
	}
	return req(r, v, corr, "app")
}

func produce(v int16, corr int32, acks int16, topics ...string) []byte {
	r := kmsg.NewPtrProduceRequest()
	r.Acks = acks
	for i, t := range topics {
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = t
		rt.TopicID = [16]byte{byte(i + 1), 0xee}
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = int32(i), []byte("records")
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
	}
	return req(r, v, corr, "app")
}

func fetch(v int16, corr, sessID, epoch int32, topics ...string) []byte {
	r := kmsg.NewPtrFetchRequest()
	r.SessionID, r.SessionEpoch = sessID, epoch
	for _, t := range topics {
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = t
		rp := kmsg.NewFetchRequestTopicPartition()
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
	}
	return req(r, v, corr, "app")
}

// raw builds a request from a header and body by hand.
func raw(key, ver int16, corr int32, clientID string, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(ver))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func frame(n int, verb, res, aux string, key, ver int16, corr int32) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirRequest, Verb: verb, Resources: res, Aux: aux, Args: frameArgs(key, ver, corr)}
}

func more(n int) result { return result{Op: l7.OpMore, N: n} }

func skip(dir l7.Dir, n int) result { return result{Op: l7.OpSkip, N: n, Dir: dir} }

// parseCase is one input and the first answer of a fresh parser.
type parseCase struct {
	name string
	in   []byte
	want result
	err  error // l7.ErrMalformed or l7.ErrTooLong, instead of want
}

func (c parseCase) check(t *testing.T, dir l7.Dir, prime []byte) {
	t.Helper()
	p := NewParser()
	for _, r := range stream(t, p, l7.DirRequest, prime, []int{len(prime)}) {
		if r.Err != nil {
			t.Fatalf("priming requests: %v", r)
		}
	}
	got := parse(t, p, dir, c.in)
	if c.err != nil {
		if !errors.Is(got.Err, c.err) {
			t.Fatalf("Parse(%x) = %v, want error %v", c.in, got, c.err)
		}
		return
	}
	if got != c.want {
		t.Fatalf("Parse(%x)\n got %v\nwant %v", c.in, got, c.want)
	}
}

func requestCases() []parseCase {
	av := apiVersions(3, 1)
	md := metadata(12, 2, "orders", "audit")
	mdAll := metadata(12, 2)
	md0 := metadata(0, 2, "orders")
	pr := produce(9, 3, -1, "orders", "audit")
	pr0 := produce(9, 3, 0, "orders")
	pr3 := produce(3, 3, 1, "orders", "orders")
	fe := fetch(11, 4, 0, 0, "orders")
	unknown := raw(200, 1, 5, "x", []byte{1, 2, 3})
	future := raw(keyProduce, 99, 6, "y", []byte{1, 2, 3})
	nullClient := raw(keyHeartbeat, 0, 7, "", []byte("group"))
	binary.BigEndian.PutUint16(nullClient[12:], 0xffff)
	many := make([]string, 20)
	for i := range many {
		many[i] = fmt.Sprintf("t%02d", i)
	}
	mdMany := metadata(4, 9, many...)
	trailing := append(slices.Clone(md), 0)
	binary.BigEndian.PutUint32(trailing, uint32(len(trailing)-4))
	withBody := func(b []byte) []byte { return raw(keyDeleteGroups, 0, 1, "c", b) }
	return []parseCase{
		{name: "api versions v3: header frame, body skipped", in: av, want: frame(17, "ApiVersions", "", "app", keyApiVersions, 3, 1)},
		{name: "metadata v12 topics", in: md, want: frame(len(md), "Metadata", "orders,audit", "app", keyMetadata, 12, 2)},
		{name: "metadata v12 every topic", in: mdAll, want: frame(len(mdAll), "Metadata", "", "app", keyMetadata, 12, 2)},
		{name: "metadata v0", in: md0, want: frame(len(md0), "Metadata", "orders", "app", keyMetadata, 0, 2)},
		{name: "produce v9", in: pr, want: frame(len(pr), "Produce", "orders,audit", "app", keyProduce, 9, 3)},
		{name: "produce acks=0 expects no reply", in: pr0, want: func() result {
			r := frame(len(pr0), "Produce", "orders", "app", keyProduce, 9, 3)
			r.NoReply = true
			return r
		}()},
		{name: "produce names a topic once", in: pr3, want: frame(len(pr3), "Produce", "orders", "app", keyProduce, 3, 3)},
		{name: "fetch v11", in: fe, want: frame(len(fe), "Fetch", "orders", "app", keyFetch, 11, 4)},
		{name: "unknown api key", in: unknown, want: frame(15, "API_200", "", "x", 200, 1, 5)},
		{name: "version above the table: no topics", in: future, want: frame(15, "Produce", "", "y", keyProduce, 99, 6)},
		{name: "null client id", in: nullClient, want: frame(14, "Heartbeat", "", "", keyHeartbeat, 0, 7)},
		{name: "more topics than a frame holds", in: mdMany, want: func() result {
			r := frame(len(mdMany), "Metadata", strings.Join(many[:l7.MaxResources], ","), "app", keyMetadata, 4, 9)
			r.Overflow = true
			return r
		}()},
		{name: "pipelined", in: append(slices.Clone(md), av...), want: frame(len(md), "Metadata", "orders,audit", "app", keyMetadata, 12, 2)},

		{name: "nothing", in: nil, want: more(minRequest)},
		{name: "part of the size", in: []byte{0, 0}, want: more(minRequest - 2)},
		{name: "size only", in: av[:4], want: more(minRequest - 4)},
		{name: "header without client id", in: av[:14], want: more(3)},
		{name: "topic request without its end", in: md[:len(md)-5], want: more(5)},

		{name: "size below a header", in: []byte{0, 0, 0, 9}, err: l7.ErrMalformed},
		{name: "negative size", in: []byte{0xff, 0xff, 0xff, 0xff}, err: l7.ErrMalformed},
		{name: "negative api key", in: raw(-1, 0, 1, "c", nil), err: l7.ErrMalformed},
		{name: "negative version", in: raw(1, -3, 1, "c", nil), err: l7.ErrMalformed},
		{name: "client id length below -1", in: func() []byte { b := raw(1, 0, 1, "", nil); b[12], b[13] = 0xff, 0xfe; return b }(), err: l7.ErrMalformed},
		{name: "client id past the size", in: func() []byte { b := raw(12, 0, 1, "abc", nil); b[13] = 9; return b }(), err: l7.ErrMalformed},
		{name: "controlled shutdown v0", in: raw(keyControlledShutdown, 0, 1, "", []byte{0, 0, 0, 1}), err: l7.ErrMalformed},
		{name: "sasl handshake v0", in: raw(keySaslHandshake, 0, 1, "c", []byte{0, 5, 'P', 'L', 'A', 'I', 'N'}), err: l7.ErrMalformed},
		{name: "bytes after the body", in: trailing, err: l7.ErrMalformed},
		{name: "array count past the end", in: withBody([]byte{0, 0, 0, 9, 0, 1, 'g'}), err: l7.ErrMalformed},
		{name: "negative array count", in: withBody([]byte{0xff, 0xff, 0xff, 0xfe}), err: l7.ErrMalformed},
		{name: "null array where none may be", in: withBody([]byte{0xff, 0xff, 0xff, 0xff}), err: l7.ErrMalformed},
		{name: "string past the end", in: withBody([]byte{0, 0, 0, 1, 0, 9, 'g'}), err: l7.ErrMalformed},
		{name: "bad varint", in: raw(keyDeleteGroups, 2, 1, "c", []byte{0, 0xff, 0xff, 0xff, 0xff, 0xff}), err: l7.ErrMalformed},
		{name: "too large", in: []byte{0x7f, 0, 0, 0}, err: l7.ErrTooLong},
		{name: "just too large", in: binary.BigEndian.AppendUint32(nil, MaxRequest+1), err: l7.ErrTooLong},
	}
}

func TestParseRequest(t *testing.T) {
	for _, c := range requestCases() {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirRequest, nil) })
	}
}

// reply builds a reply with a correlation id and body by hand.
func reply(corr int32, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	return append(b, body...)
}

func replyFrame(n int, key, ver int16, corr int32) result {
	return result{Op: l7.OpFrame, N: n, Dir: l7.DirReply, Args: frameArgs(key, ver, corr)}
}

func TestParseReply(t *testing.T) {
	prime := append(apiVersions(3, 1), metadata(12, 2, "orders")...)
	body := bytes.Repeat([]byte{7}, 40)
	cases := []parseCase{
		{name: "whole reply", in: reply(1, body), want: replyFrame(48, keyApiVersions, 3, 1)},
		{name: "two replies", in: append(reply(1, body), reply(2, nil)...), want: replyFrame(48, keyApiVersions, 3, 1)},
		{name: "reply cut: its bytes are streamed", in: reply(1, body)[:20], want: skip(l7.DirReply, 20)},
		{name: "nothing", in: nil, want: more(minReply)},
		{name: "size only", in: reply(1, body)[:4], want: more(4)},
		{name: "correlation id of a later request", in: reply(2, nil), err: l7.ErrMalformed},
		{name: "size below a correlation id", in: []byte{0, 0, 0, 3, 0, 0, 0, 1}, err: l7.ErrMalformed},
		{name: "too large", in: []byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1}, err: l7.ErrTooLong},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, l7.DirReply, prime) })
	}
	t.Run("reply without a request", func(t *testing.T) {
		parseCase{in: reply(1, nil), err: l7.ErrMalformed}.check(t, l7.DirReply, nil)
	})
	t.Run("metadata reply is held whole", func(t *testing.T) {
		md := metadataReply12(2, map[string][16]byte{"orders": {1}})
		p := NewParser()
		stream(t, p, l7.DirRequest, prime, []int{len(prime)})
		if r := parse(t, p, l7.DirReply, reply(1, nil)); r.Op != l7.OpFrame {
			t.Fatalf("api versions reply: %v", r)
		}
		if r := parse(t, p, l7.DirReply, md[:20]); r != more(len(md)-20) {
			t.Fatalf("metadata prefix: %v", r)
		}
		if r := parse(t, p, l7.DirReply, md); r != replyFrame(len(md), keyMetadata, 12, 2) {
			t.Fatalf("metadata: %v", r)
		}
	})
}

// metadataReply12 is a Metadata v12 reply naming topics with ids.
func metadataReply12(corr int32, topics map[string][16]byte) []byte {
	r := kmsg.NewPtrMetadataResponse()
	r.Version = 12
	b := kmsg.NewMetadataResponseBroker()
	b.Host, b.Port = "127.0.0.1", 9092
	r.Brokers = append(r.Brokers, b)
	names := make([]string, 0, len(topics))
	for n := range topics {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t := kmsg.NewMetadataResponseTopic()
		t.Topic, t.TopicID = kmsg.StringPtr(n), topics[n]
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Replicas, p.ISR = []int32{0}, []int32{0}
		t.Partitions = append(t.Partitions, p)
		r.Topics = append(r.Topics, t)
	}
	body := append([]byte{0}, r.AppendTo(nil)...) // response header v1: no tags
	return reply(corr, body)
}

// TestTopicIDsLearned: a Metadata reply on one connection teaches the ids
// that a Produce v13 on another connection of the same Protocol uses; an
// id given two names resolves to none.
func TestTopicIDsLearned(t *testing.T) {
	pr := Protocol()
	a, b := pr.New().(*Parser), pr.New().(*Parser)
	stream(t, a, l7.DirRequest, metadata(12, 2, "orders"), []int{len(metadata(12, 2, "orders"))})
	stream(t, a, l7.DirReply, metadataReply12(2, map[string][16]byte{"orders": {1, 0xee}, "audit": {2, 0xee}}), []int{len(metadataReply12(2, map[string][16]byte{"orders": {1, 0xee}, "audit": {2, 0xee}}))})
	msg := produce(13, 5, -1, "orders", "audit")
	if r := parse(t, b, l7.DirRequest, msg); r.Resources != "orders,audit" {
		t.Fatalf("produce v13 on another connection: %v", r)
	}
	// Another server claims id {1, 0xee} is "public": the id is ambiguous.
	stream(t, a, l7.DirRequest, metadata(12, 3, "public"), []int{len(metadata(12, 3, "public"))})
	feed(t, a, l7.DirReply, metadataReply12(3, map[string][16]byte{"public": {1, 0xee}}))
	if r := parse(t, b, l7.DirRequest, msg); r.Resources != "Ae4AAAAAAAAAAAAAAAAAAA,audit" {
		t.Fatalf("after a conflicting reply: %v", r)
	}
}

// TestFetchSessions: an incremental fetch names every topic of its
// session, and an incremental fetch of a session this connection did not
// see start is framed with Overflow.
func TestFetchSessions(t *testing.T) {
	p := NewParser()
	seq := []struct {
		msg  []byte
		res  string
		over bool
	}{
		{fetch(11, 1, 0, 0, "orders", "audit"), "orders,audit", false},
		{fetch(11, 2, 77, 1), "orders,audit", false},
		{fetch(11, 3, 77, 2, "billing"), "billing,orders,audit", false},
		{fetch(11, 4, 78, 3), "orders,audit,billing", true}, // another session id
		{fetch(11, 5, 0, -1, "orders"), "orders", false},
		{fetch(11, 6, 77, 1), "", true}, // no session started
		{fetch(11, 7, 0, 0, "x"), "x", false},
		{fetch(11, 8, 5, 1), "x", false},
	}
	for i, s := range seq {
		var f l7.Frame
		op, _, err := p.Parse(l7.DirRequest, s.msg, &f)
		r := resultOf(op, len(s.msg), err, &f)
		if r.Resources != s.res || r.Overflow != s.over {
			t.Fatalf("fetch %d: %v, want %q overflow=%v", i, r, s.res, s.over)
		}
		if s.over || i == 1 || i == 2 || i == 7 {
			// An incremental fetch is denied with FETCH_SESSION_ID_NOT_FOUND.
			out := Deny(nil, &f, "")
			_, body := replyBody(t, out, keyFetch, 11)
			resp := decodeReply(t, keyFetch, 11, body).(*kmsg.FetchResponse)
			if resp.ErrorCode != errFetchSessionIDNotFound || len(resp.Topics) != 0 {
				t.Fatalf("fetch %d deny: %+v", i, resp)
			}
		}
		p.Denied(&f) // keep the FIFO small
	}
}

// TestDeniedForgetsTheRequest: after Denied, the reply to the request
// before the denied one is followed by the reply to the one after it.
func TestDeniedForgetsTheRequest(t *testing.T) {
	p := NewParser()
	for i, msg := range [][]byte{metadata(4, 1, "a"), metadata(4, 2, "b"), metadata(4, 3, "c")} {
		if r := parse(t, p, l7.DirRequest, msg); r.Op != l7.OpFrame {
			t.Fatal(r)
		}
		if i == 1 {
			p.Denied(nil)
		}
	}
	for _, corr := range []int32{1, 3} {
		if r := parse(t, p, l7.DirReply, reply(corr, nil)); r != replyFrame(8, keyMetadata, 4, corr) {
			t.Fatalf("reply %d: %v", corr, r)
		}
	}
	// acks=0: nothing to forget.
	parse(t, p, l7.DirRequest, produce(9, 4, 0, "a"))
	p.Denied(nil)
	parse(t, p, l7.DirRequest, metadata(4, 5, "a"))
	if r := parse(t, p, l7.DirReply, reply(5, nil)); r.Op != l7.OpFrame {
		t.Fatalf("reply after acks=0: %v", r)
	}
}

// TestManyPendingRequests: past MaxPending requests awaiting replies, the
// parser counts them and frames their replies by size.
func TestManyPendingRequests(t *testing.T) {
	p := NewParser()
	const n = MaxPending + 10
	for i := range n {
		if r := parse(t, p, l7.DirRequest, metadata(4, int32(i), "a")); r.Op != l7.OpFrame {
			t.Fatal(r)
		}
	}
	p.Denied(nil) // the last one, untracked
	for i := range n - 1 {
		if r := parse(t, p, l7.DirReply, reply(int32(i), nil)); r.Op != l7.OpFrame {
			t.Fatalf("reply %d: %v", i, r)
		}
	}
	if r := parse(t, p, l7.DirReply, reply(0, nil)); !errors.Is(r.Err, l7.ErrMalformed) {
		t.Fatalf("reply beyond the requests: %v", r)
	}
}

// complete returns the whole first messages of the request cases.
func completeRequests() map[string][]byte {
	out := map[string][]byte{}
	for _, c := range requestCases() {
		if c.err == nil && c.want.Op == l7.OpFrame {
			size := 4 + int(binary.BigEndian.Uint32(c.in))
			out[c.name] = c.in[:size]
		}
	}
	return out
}

// TestOneByteAtATime feeds each request one byte at a time to one parser:
// every answer before its frame is OpMore with a count that does not
// overshoot the frame, the frame equals a fresh whole parse, and the body
// after it is skipped byte by byte.
func TestOneByteAtATime(t *testing.T) {
	for name, msg := range completeRequests() {
		t.Run(name, func(t *testing.T) {
			want := parse(t, NewParser(), l7.DirRequest, msg)
			p := NewParser()
			l7test.Bytewise(t, parser(p, l7.DirRequest), msg[:want.N], want)
			k := want.N
			for ; k < len(msg); k++ {
				if got := parse(t, p, l7.DirRequest, msg[k:k+1]); got != skip(l7.DirRequest, 1) {
					t.Fatalf("body byte %d: %v", k, got)
				}
			}
		})
	}
	t.Run("replies", func(t *testing.T) {
		reqs, reps := recordedPair(t, "franz-go-1.22.3-consume-c1")
		p := NewParser()
		stream(t, p, l7.DirRequest, reqs, []int{len(reqs)})
		want := normalize(l7.DirReply, stream(t, NewParserPrimed(t, reqs), l7.DirReply, reps, []int{len(reps)}))
		ends := make([]int, len(reps))
		for i := range ends {
			ends[i] = i + 1
		}
		got := normalize(l7.DirReply, stream(t, p, l7.DirReply, reps, ends))
		if !slices.Equal(got, want) {
			t.Fatalf("one byte at a time:\n got %v\nwant %v", got, want)
		}
	})
}

// NewParserPrimed returns a parser that has seen the requests reqs.
func NewParserPrimed(t testing.TB, reqs []byte) *Parser {
	t.Helper()
	p := NewParser()
	for _, r := range stream(t, p, l7.DirRequest, reqs, []int{len(reqs)}) {
		if r.Err != nil {
			t.Fatalf("priming: %v", r)
		}
	}
	return p
}

// recordedPair returns the request and reply streams of one recorded
// connection.
func recordedPair(t testing.TB, base string) (reqs, reps []byte) {
	t.Helper()
	return l7test.ReadFile(t, filepath.Join("testdata", base+".req")), l7test.ReadFile(t, filepath.Join("testdata", "kfake-"+base+".reply"))
}

// corpus is the recorded connections' requests, one after another, and
// their replies likewise: all of them, or those named.
func corpus(t testing.TB, bases ...string) (reqs, reps []byte) {
	t.Helper()
	if bases == nil {
		for _, name := range l7test.Recordings(t, ".req") {
			bases = append(bases, strings.TrimSuffix(filepath.Base(name), ".req"))
		}
	}
	for _, base := range bases {
		q, r := recordedPair(t, base)
		reqs, reps = append(reqs, q...), append(reps, r...)
	}
	return reqs, reps
}

// splitCorpus is a part of the recordings with every kind of message:
// header-only requests with bodies, topic requests, acks=0, a Fetch
// session, Metadata replies learned from.
var splitCorpus = []string{"kcat-1.7.1-produce-c1", "franz-go-1.22.3-produce-acks0-c2", "franz-go-1.22.3-consume-c1",
	"franz-go-1.22.3-consume-c3", "franz-go-1.22.3-group-c2", "kcat-1.7.1-consume-offsets-c1",
	"kcat-1.7.1-group-consume-c1", "franz-go-1.22.3-admin-c3", "franz-go-1.22.3-txn-c2"}

// TestEverySplitPoint cuts the recorded streams in two at every offset:
// the normalised answers must be those of the uncut stream.
func TestEverySplitPoint(t *testing.T) {
	reqs, reps := corpus(t, splitCorpus...)
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		t.Run(dir.String(), func(t *testing.T) {
			data := reqs
			fresh := func() *Parser { return NewParser() }
			if dir == l7.DirReply {
				data = reps
				fresh = func() *Parser { return NewParserPrimedQuiet(reqs) }
			}
			want := normalize(dir, stream(t, fresh(), dir, data, []int{len(data)}))
			if last := want[len(want)-1]; last.Err != nil || last.Op != l7.OpMore {
				t.Fatalf("corpus does not end on a message boundary: %v", last)
			}
			if len(want) < 40 {
				t.Fatalf("corpus holds only %d messages", len(want))
			}
			l7test.EverySplit(t, func() l7test.ParseFunc[result] { return parser(fresh(), dir) }, data, want,
				func(rs []result) []result { return normalize(dir, rs) })
		})
	}
}

// NewParserPrimedQuiet is NewParserPrimed without checks, for loops.
func NewParserPrimedQuiet(reqs []byte) *Parser {
	p := NewParser()
	var f l7.Frame
	for rest := reqs; len(rest) > 0; {
		op, n, err := p.Parse(l7.DirRequest, rest, &f)
		if err != nil || op == l7.OpMore {
			break
		}
		rest = rest[n:]
	}
	return p
}

// TestRandomChunks feeds the recorded streams in random chunks.
func TestRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	reqs, reps := corpus(t)
	for _, dir := range []l7.Dir{l7.DirRequest, l7.DirReply} {
		data := reqs
		fresh := func() *Parser { return NewParser() }
		if dir == l7.DirReply {
			data = reps
			fresh = func() *Parser { return NewParserPrimedQuiet(reqs) }
		}
		want := normalize(dir, stream(t, fresh(), dir, data, []int{len(data)}))
		t.Run(dir.String(), func(t *testing.T) {
			l7test.RandomChunks(t, rng, func() l7test.ParseFunc[result] { return parser(fresh(), dir) }, data, want, 300, 100,
				func(rs []result) []result { return normalize(dir, rs) })
		})
	}
}

// TestRecorded parses the bytes recorded from kcat 1.7.1 (librdkafka
// 2.0.2) and franz-go 1.22.3 talking to franz-go's kfake broker (see
// testdata/README.md), request and reply in turn as they happened, with
// one Protocol's parsers for the connections of one client run (so ids
// learned on one connection resolve on another): every request that
// expects a reply gets exactly one reply frame, and every topic the
// clients named resolves to its name.
func TestRecorded(t *testing.T) {
	runs := map[string][]string{}
	for _, name := range l7test.Recordings(t, ".req") {
		base := strings.TrimSuffix(filepath.Base(name), ".req")
		run := base[:strings.LastIndex(base, "-c")]
		runs[run] = append(runs[run], base)
	}
	verbs := map[string]bool{}
	resources := map[string]bool{}
	for run, conns := range runs {
		t.Run(run, func(t *testing.T) {
			slices.Sort(conns)
			pr := Protocol()
			for _, base := range conns {
				reqs, reps := recordedPair(t, base)
				p := pr.New().(*Parser)
				q, r := 0, 0
				answered := 0
				for q < len(reqs) {
					rq := parse(t, p, l7.DirRequest, reqs[q:])
					if rq.Err != nil || rq.Op == l7.OpMore {
						t.Fatalf("%s: request at %d: %v", base, q, rq)
					}
					q += rq.N
					if rq.Op != l7.OpFrame {
						continue
					}
					verbs[rq.Verb] = true
					for _, res := range strings.Split(rq.Resources, ",") {
						if res != "" {
							resources[res] = true
						}
					}
					// The body, then the reply.
					for q < len(reqs) && p.reqSkip > 0 {
						s := parse(t, p, l7.DirRequest, reqs[q:])
						q += s.N
					}
					if rq.NoReply {
						continue
					}
					for {
						rr := parse(t, p, l7.DirReply, reps[r:])
						if rr.Err != nil || rr.Op == l7.OpMore {
							t.Fatalf("%s: reply at %d to %v: %v", base, r, rq, rr)
						}
						r += rr.N
						if rr.Op == l7.OpFrame {
							if rr.Args != rq.Args {
								t.Fatalf("%s: reply %v to %v", base, rr, rq)
							}
							answered++
							break
						}
					}
				}
				if r != len(reps) {
					t.Fatalf("%s: %d reply bytes left", base, len(reps)-r)
				}
				if answered == 0 {
					t.Fatalf("%s: no reply", base)
				}
			}
		})
	}
	for _, v := range []string{"ApiVersions", "Metadata", "Produce", "Fetch", "ListOffsets", "FindCoordinator",
		"JoinGroup", "SyncGroup", "Heartbeat", "LeaveGroup", "OffsetCommit", "OffsetFetch", "CreateTopics",
		"DeleteTopics", "DeleteRecords", "DescribeGroups", "InitProducerId", "EndTxn"} {
		if !verbs[v] {
			t.Errorf("no %s in the recordings (have %v)", v, verbs)
		}
	}
	for r := range resources {
		if r != "orders" && r != "audit" && r != "scratch" {
			t.Errorf("resource %q: a topic id left unresolved?", r)
		}
	}
}

func TestParseNilFrameAndBadDir(t *testing.T) {
	p := NewParser()
	msg := metadata(4, 1, "a")
	if op, n, err := p.Parse(l7.DirRequest, msg, nil); op != l7.OpFrame || n != len(msg) || err != nil {
		t.Fatalf("nil frame: %v %d %v", op, n, err)
	}
	if _, _, err := p.Parse(l7.Dir(7), msg, &l7.Frame{}); !errors.Is(err, l7.ErrMalformed) {
		t.Fatalf("bad direction: %v", err)
	}
	var zero Parser
	if r := parse(t, &zero, l7.DirRequest, msg); r.Resources != "a" {
		t.Fatalf("zero Parser: %v", r)
	}
	if k, v := APIKeyVersion(&l7.Frame{Args: 3<<16 | 12}); k != 3 || v != 12 {
		t.Fatalf("APIKeyVersion = %d, %d", k, v)
	}
	var f l7.Frame
	p.Parse(l7.DirRequest, metadata(4, -5, "a"), &f)
	if k, v := APIKeyVersion(&f); k != keyMetadata || v != 4 || CorrelationID(&f) != -5 {
		t.Fatalf("APIKeyVersion, CorrelationID = %d, %d, %d", k, v, CorrelationID(&f))
	}
}

func TestFrameViewsCannotGrowIntoTheInput(t *testing.T) {
	in := metadata(4, 1, "a", "b")
	keep := slices.Clone(in)
	var f l7.Frame
	if _, _, err := NewParser().Parse(l7.DirRequest, in, &f); err != nil {
		t.Fatal(err)
	}
	_ = append(f.Resource, 'X')
	_ = append(f.Aux, 'X')
	if !bytes.Equal(in, keep) {
		t.Fatal("appending to a view changed the input")
	}
}

func TestProtocol(t *testing.T) {
	pr := Protocol()
	if pr.Name != "kafka" || pr.New == nil || pr.Sniff == nil || pr.Deny == nil || pr.MaxMessage != MaxRequest {
		t.Fatalf("Protocol() = %+v", pr)
	}
	a, b := pr.New().(*Parser), pr.New().(*Parser)
	if a == b || a.ids != b.ids {
		t.Fatal("New() must return distinct parsers sharing one id table")
	}
	if Protocol().New().(*Parser).ids == a.ids {
		t.Fatal("two Protocol values share an id table")
	}
}

// TestSchemaDepth: the walker's recursion bound holds for every schema.
func TestSchemaDepth(t *testing.T) {
	var depth func(fs []field) int
	depth = func(fs []field) int {
		d := 0
		for _, f := range fs {
			d = max(d, 1+depth(f.sub))
		}
		return d
	}
	for k, s := range requestSchemas {
		if d := depth(s); d > maxSchemaDepth+1 {
			t.Errorf("request schema %d nests %d deep", k, d)
		}
	}
	if d := depth(metadataReply); d > maxSchemaDepth+1 {
		t.Errorf("metadata reply schema nests %d deep", d)
	}
}

func TestDenyGolden(t *testing.T) {
	tests := []struct {
		name   string
		msg    []byte
		reason string
	}{
		{"produce v9", produce(9, 11, -1, "orders", "audit"), "l7_not_allowed"},
		{"produce v3", produce(3, 12, 1, "orders"), ""},
		{"produce acks=0 gets nothing", produce(9, 13, 0, "orders"), "l7_not_allowed"},
		{"fetch v11", fetch(11, 14, 0, 0, "orders"), "l7_not_allowed"},
		{"metadata v12", metadata(12, 15, "orders"), "l7_not_allowed"},
		{"metadata v1", metadata(1, 16, "orders"), ""},
		{"api versions v3 (header v0)", apiVersions(3, 17), "no_rule"},
		{"heartbeat v4", func() []byte { r := kmsg.NewPtrHeartbeatRequest(); r.Group = "g"; return req(r, 4, 18, "c") }(), "l7_not_allowed"},
		{"reason sanitised", produce(9, 19, -1, "orders"), "a\r\nb\x00c\x7fd\xffe" + strings.Repeat("x", 300)},
		{"no deny reply for this API", raw(29, 0, 20, "c", make([]byte, 12)), ""},
		{"unknown API", raw(200, 0, 21, "c", nil), ""},
	}
	var golden bytes.Buffer
	for _, tt := range tests {
		var f l7.Frame
		if op, _, err := NewParser().Parse(l7.DirRequest, tt.msg, &f); op != l7.OpFrame || err != nil {
			t.Fatalf("%s: %v %v", tt.name, op, err)
		}
		out := Deny(nil, &f, tt.reason)
		if got := Deny([]byte("prefix"), &f, tt.reason); string(got) != "prefix"+string(out) {
			t.Errorf("%s: Deny does not append", tt.name)
		}
		if len(out) > 0 {
			// The reply is one complete reply for the reply parser.
			p := NewParserPrimed(t, tt.msg)
			if r := parse(t, p, l7.DirReply, out); r.Op != l7.OpFrame || r.N != len(out) {
				t.Errorf("%s: reply parser: %v", tt.name, r)
			}
		}
		fmt.Fprintf(&golden, "%s:\n  %s\n", tt.name, hex.EncodeToString(out))
		if len(out) > 0 {
			key, v := APIKeyVersion(&f)
			_, body := replyBody(t, out, key, v)
			j, err := json.Marshal(decodeReply(t, key, v, body))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&golden, "  %s\n", j)
		}
	}
	// A frame not from the parser: its Args, nothing echoed.
	foreign := &l7.Frame{Verb: []byte("Produce"), Args: frameArgs(keyProduce, 9, 77)}
	if got, want := hex.EncodeToString(Deny(nil, foreign, "")), "0000000b0000004d00010000000000"; got != want {
		t.Errorf("deny of a frame not from the parser: %s, want %s", got, want)
	}
	if n := len(Deny(nil, nil, "")); n != 0 {
		t.Errorf("deny of nil: %d bytes", n)
	}
	path := filepath.Join("testdata", "deny.golden")
	if *update {
		if err := os.WriteFile(path, golden.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(golden.Bytes(), want) {
		t.Fatalf("Deny output differs from %s (go test -update to accept):\n got:\n%s\nwant:\n%s", path, golden.Bytes(), want)
	}
}

func TestSniff(t *testing.T) {
	pgStartup := []byte("\x00\x00\x00\x4f\x00\x03\x00\x00user\x00postgres\x00database\x00postgres\x00application_name\x00psql\x00client_encoding\x00UTF8\x00\x00")
	mongo := []byte("\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00")
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"api versions", apiVersions(3, 1), true},
		{"metadata v12", metadata(12, 1, "a"), true},
		{"produce", produce(9, 1, 1, "a"), true},
		{"header only", apiVersions(3, 1)[:14], true},
		{"too short", apiVersions(3, 1)[:13], false},
		{"metadata v0 (PostgreSQL startup)", pgStartup, false},
		{"PostgreSQL SSLRequest", []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 0, 0, 0}, false},
		{"unknown api key", raw(200, 0, 1, "c", nil), false},
		{"version far above the table", raw(keyProduce, 40, 1, "c", nil), false},
		{"client id not printable", raw(keyApiVersions, 0, 1, "a\x00b", nil), false},
		{"client id longer than the size", func() []byte { b := raw(keyApiVersions, 0, 1, "ab", nil); b[13] = 50; return b }(), false},
		{"redis", []byte("*1\r\n$4\r\nPING\r\n"), false},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"tls", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00\x00"), false},
		{"memcached text", []byte("get foo\r\nget bar\r\n"), false},
		{"memcached binary", []byte("\x80\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00"), false},
		{"mongodb OP_MSG of 512 bytes", mongo, false},
		{"mysql greeting", []byte("\x4a\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00"), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sniff(tt.in); got != tt.want {
				t.Fatalf("Sniff(%x) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	for _, name := range l7test.Recordings(t, ".req") {
		if !Sniff(l7test.ReadFile(t, name)) {
			t.Errorf("Sniff does not recognise %s", name)
		}
	}
}

func TestZeroAllocations(t *testing.T) {
	pr := Protocol()
	learner := pr.New().(*Parser)
	stream(t, learner, l7.DirRequest, metadata(12, 1, "orders"), []int{len(metadata(12, 1, "orders"))})
	feed(t, learner, l7.DirReply, metadataReply12(1, map[string][16]byte{"orders": {1, 0xee}}))
	requests := map[string][]byte{
		"api versions": apiVersions(3, 1),
		"metadata":     metadata(12, 2, "orders", "audit"),
		"produce v9":   produce(9, 3, -1, "orders", "audit"),
		"produce v13":  produce(13, 4, -1, "orders", "unknown"),
		"fetch":        fetch(11, 5, 0, 0, "orders"),
		"incremental":  fetch(11, 5, 9, 1),
	}
	p := pr.New().(*Parser)
	var f l7.Frame
	buf := make([]byte, 0, 4096)
	for name, msg := range requests {
		p.Parse(l7.DirRequest, msg, &f) // warm the buffers up
		if n := testing.AllocsPerRun(100, func() {
			p.Parse(l7.DirRequest, msg[:len(msg)/2], &f)
			for rest := msg; len(rest) > 0; {
				_, n, err := p.Parse(l7.DirRequest, rest, &f)
				if err != nil {
					panic(err)
				}
				buf = Deny(buf[:0], &f, "l7_not_allowed")
				p.Denied(&f)
				rest = rest[n:]
			}
		}); n != 0 {
			t.Errorf("request %s: %v allocations per Parse and Deny, want 0", name, n)
		}
	}
	md := metadataReply12(6, map[string][16]byte{"orders": {1, 0xee}, "audit": {2}})
	av := reply(7, bytes.Repeat([]byte{1}, 100))
	reqs := append(metadata(12, 6, "orders"), apiVersions(3, 7)...)
	if n := testing.AllocsPerRun(100, func() {
		for rest := reqs; len(rest) > 0; {
			_, n, _ := p.Parse(l7.DirRequest, rest, &f)
			rest = rest[n:]
		}
		p.Parse(l7.DirReply, md, &f)
		p.Parse(l7.DirReply, av[:20], &f)
		p.Parse(l7.DirReply, av[20:], &f)
	}); n != 0 {
		t.Errorf("replies: %v allocations, want 0", n)
	}
	sniffed := apiVersions(3, 1)
	if n := testing.AllocsPerRun(100, func() { Sniff(sniffed) }); n != 0 {
		t.Errorf("Sniff: %v allocations", n)
	}
}

func benchStream(b *testing.B, p *Parser, dir l7.Dir, data []byte, frames int, prime []byte) {
	b.Helper()
	var f l7.Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	primed := 0 // request frames parsed before the replies, per op
	for b.Loop() {
		primed = 0
		for rest := prime; len(rest) > 0; {
			op, n, _ := p.Parse(l7.DirRequest, rest, &f)
			if op == l7.OpFrame {
				primed++
			}
			rest = rest[n:]
		}
		got := 0
		for rest := data; len(rest) > 0; {
			op, n, err := p.Parse(dir, rest, &f)
			if err != nil || op == l7.OpMore {
				b.Fatalf("%v %d %v", op, n, err)
			}
			if op == l7.OpFrame {
				got++
			}
			rest = rest[n:]
		}
		if got != frames {
			b.Fatalf("%d frames, want %d", got, frames)
		}
	}
	// Every message parsed counts: the requests that prime the replies
	// too, since their time is in the op.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*(frames+primed)), "ns/msg")
}

func BenchmarkParseRequest(b *testing.B) {
	big := kmsg.NewPtrProduceRequest()
	big.Acks = -1
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "orders"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = bytes.Repeat([]byte{1}, 64<<10)
	rt.Partitions = append(rt.Partitions, rp)
	big.Topics = append(big.Topics, rt)
	b.Run("produce-2-topics", func(b *testing.B) {
		benchStream(b, NewParser(), l7.DirRequest, produce(9, 1, 1, "orders", "audit"), 1, nil)
	})
	b.Run("produce-64KiB", func(b *testing.B) { benchStream(b, NewParser(), l7.DirRequest, req(big, 9, 1, "app"), 1, nil) })
	b.Run("fetch", func(b *testing.B) {
		benchStream(b, NewParser(), l7.DirRequest, fetch(11, 1, 0, 0, "orders", "audit"), 1, nil)
	})
	b.Run("api-versions", func(b *testing.B) { benchStream(b, NewParser(), l7.DirRequest, apiVersions(3, 1), 1, nil) })
	reqs, _ := corpus(b)
	n := frames(stream(b, NewParser(), l7.DirRequest, reqs, []int{len(reqs)}))
	b.Run("recorded", func(b *testing.B) { benchStream(b, NewParser(), l7.DirRequest, reqs, n, nil) })
}

func BenchmarkParseReply(b *testing.B) {
	reqs, reps := corpus(b)
	n := frames(stream(b, NewParserPrimedQuiet(reqs), l7.DirReply, reps, []int{len(reps)}))
	b.Run("recorded", func(b *testing.B) { benchStream(b, NewParser(), l7.DirReply, reps, n, reqs) })
}

func BenchmarkDeny(b *testing.B) {
	var f l7.Frame
	p := NewParser()
	p.Parse(l7.DirRequest, produce(9, 1, -1, "orders", "audit"), &f)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = Deny(buf[:0], &f, "l7_not_allowed")
	}
	b.SetBytes(int64(len(buf)))
}
