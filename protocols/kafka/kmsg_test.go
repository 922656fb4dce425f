package kafka

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// franz-go's kmsg (Kafka's JSON message definitions turned into Go) is the
// oracle of these tests: it writes every version of every request the
// parser reads, and reads back every deny reply.

// tp is a topic of a test request.
type tp struct {
	name  string
	id    [16]byte
	parts []int32
}

var testTopics = []tp{
	{name: "orders", id: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, parts: []int32{0, 3}},
	{name: "audit.log-1", id: [16]byte{0xff, 1}, parts: []int32{7}},
}

// buildRequest returns a request of key at version naming topics (and
// groups where the API has them).
func buildRequest(key, v int16, topics []tp, groups []string) kmsg.Request {
	switch key {
	case keyProduce:
		r := kmsg.NewPtrProduceRequest()
		r.Acks = -1
		for _, t := range topics {
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic, rt.TopicID = t.name, t.id
			for _, p := range t.parts {
				rp := kmsg.NewProduceRequestTopicPartition()
				rp.Partition, rp.Records = p, []byte("batch")
				rt.Partitions = append(rt.Partitions, rp)
			}
			r.Topics = append(r.Topics, rt)
		}
		return r
	case keyFetch:
		r := kmsg.NewPtrFetchRequest()
		r.SessionEpoch = -1
		for _, t := range topics {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = t.name, t.id
			for _, p := range t.parts {
				rp := kmsg.NewFetchRequestTopicPartition()
				rp.Partition = p
				rt.Partitions = append(rt.Partitions, rp)
			}
			r.Topics = append(r.Topics, rt)
		}
		ft := kmsg.NewFetchRequestForgottenTopic()
		ft.Topic, ft.Partitions = "gone", []int32{1}
		if v >= 7 {
			r.ForgottenTopics = append(r.ForgottenTopics, ft)
		}
		r.Rack = "rack-a"
		return r
	case keyListOffsets:
		r := kmsg.NewPtrListOffsetsRequest()
		for _, t := range topics {
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = t.name
			for _, p := range t.parts {
				rp := kmsg.NewListOffsetsRequestTopicPartition()
				rp.Partition = p
				rt.Partitions = append(rt.Partitions, rp)
			}
			r.Topics = append(r.Topics, rt)
		}
		return r
	case keyMetadata:
		r := kmsg.NewPtrMetadataRequest()
		r.Topics = []kmsg.MetadataRequestTopic{}
		for _, t := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(t.name)
			r.Topics = append(r.Topics, rt)
		}
		return r
	case keyOffsetCommit:
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Group = "g1"
		for _, t := range topics {
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic, rt.TopicID = t.name, t.id
			for _, p := range t.parts {
				rp := kmsg.NewOffsetCommitRequestTopicPartition()
				rp.Partition, rp.Offset = p, 42
				rt.Partitions = append(rt.Partitions, rp)
			}
			r.Topics = append(r.Topics, rt)
		}
		return r
	case keyOffsetFetch:
		r := kmsg.NewPtrOffsetFetchRequest()
		r.Group = "g1"
		if v < 8 {
			r.Topics = []kmsg.OffsetFetchRequestTopic{}
			for _, t := range topics {
				rt := kmsg.NewOffsetFetchRequestTopic()
				rt.Topic, rt.Partitions = t.name, t.parts
				r.Topics = append(r.Topics, rt)
			}
			return r
		}
		for gi, g := range groups {
			rg := kmsg.NewOffsetFetchRequestGroup()
			rg.Group = g
			if gi == 0 {
				rg.Topics = []kmsg.OffsetFetchRequestGroupTopic{}
				for _, t := range topics {
					rt := kmsg.NewOffsetFetchRequestGroupTopic()
					rt.Topic, rt.TopicID, rt.Partitions = t.name, t.id, t.parts
					rg.Topics = append(rg.Topics, rt)
				}
			}
			r.Groups = append(r.Groups, rg)
		}
		return r
	case keyFindCoordinator:
		r := kmsg.NewPtrFindCoordinatorRequest()
		if len(groups) > 0 {
			r.CoordinatorKey = groups[0]
		}
		r.CoordinatorKeys = groups
		return r
	case keyDescribeGroups:
		r := kmsg.NewPtrDescribeGroupsRequest()
		r.Groups = groups
		return r
	case keyCreateTopics:
		r := kmsg.NewPtrCreateTopicsRequest()
		for _, t := range topics {
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = t.name, 3, 1
			rc := kmsg.NewCreateTopicsRequestTopicConfig()
			rc.Name, rc.Value = "retention.ms", kmsg.StringPtr("1000")
			rt.Configs = append(rt.Configs, rc)
			r.Topics = append(r.Topics, rt)
		}
		return r
	case keyDeleteTopics:
		r := kmsg.NewPtrDeleteTopicsRequest()
		for _, t := range topics {
			r.TopicNames = append(r.TopicNames, t.name)
			rt := kmsg.NewDeleteTopicsRequestTopic()
			rt.Topic = kmsg.StringPtr(t.name)
			r.Topics = append(r.Topics, rt)
		}
		return r
	case keyDeleteRecords:
		r := kmsg.NewPtrDeleteRecordsRequest()
		for _, t := range topics {
			rt := kmsg.NewDeleteRecordsRequestTopic()
			rt.Topic = t.name
			for _, p := range t.parts {
				rp := kmsg.NewDeleteRecordsRequestTopicPartition()
				rp.Partition = p
				rt.Partitions = append(rt.Partitions, rp)
			}
			r.Topics = append(r.Topics, rt)
		}
		return r
	case keyInitProducerID:
		r := kmsg.NewPtrInitProducerIDRequest()
		if len(groups) > 0 {
			r.TransactionalID = kmsg.StringPtr(groups[0])
		}
		return r
	case keyOffsetForLeaderEpoch:
		r := kmsg.NewPtrOffsetForLeaderEpochRequest()
		for _, t := range topics {
			rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
			rt.Topic = t.name
			for _, p := range t.parts {
				rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
				rp.Partition = p
				rt.Partitions = append(rt.Partitions, rp)
			}
			r.Topics = append(r.Topics, rt)
		}
		return r
	case keyAddPartitionsToTxn:
		r := kmsg.NewPtrAddPartitionsToTxnRequest()
		r.TransactionalID = "txn"
		for _, t := range topics {
			rt := kmsg.NewAddPartitionsToTxnRequestTopic()
			rt.Topic, rt.Partitions = t.name, t.parts
			r.Topics = append(r.Topics, rt)
		}
		for _, g := range groups {
			tx := kmsg.NewAddPartitionsToTxnRequestTransaction()
			tx.TransactionalID = g
			for _, t := range topics {
				rt := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
				rt.Topic, rt.Partitions = t.name, t.parts
				tx.Topics = append(tx.Topics, rt)
			}
			r.Transactions = append(r.Transactions, tx)
		}
		return r
	case keyTxnOffsetCommit:
		r := kmsg.NewPtrTxnOffsetCommitRequest()
		r.TransactionalID, r.Group = "txn", "g1"
		for _, t := range topics {
			rt := kmsg.NewTxnOffsetCommitRequestTopic()
			rt.Topic, rt.TopicID = t.name, t.id
			for _, p := range t.parts {
				rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
				rp.Partition = p
				rt.Partitions = append(rt.Partitions, rp)
			}
			r.Topics = append(r.Topics, rt)
		}
		return r
	case keyDeleteGroups:
		r := kmsg.NewPtrDeleteGroupsRequest()
		r.Groups = groups
		return r
	}
	r := kmsg.RequestForKey(key)
	return r
}

// encodeRequest writes req at version v, with size, header and client id.
func encodeRequest(req kmsg.Request, v int16, corr int32, clientID string) []byte {
	req.SetVersion(v)
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID)).AppendRequest(nil, req, corr)
}

// replyBody splits a deny reply into its correlation id and body (after
// the response header) and checks its size field.
func replyBody(t *testing.T, out []byte, key, v int16) (int32, []byte) {
	t.Helper()
	if len(out) < 8 || int(binary.BigEndian.Uint32(out)) != len(out)-4 {
		t.Fatalf("deny reply %x: bad size", out)
	}
	corr := int32(binary.BigEndian.Uint32(out[4:]))
	body := out[8:]
	if isFlexible(key, v) && key != keyApiVersions {
		if len(body) == 0 || body[0] != 0 {
			t.Fatalf("deny reply %x: header tagged fields", out)
		}
		body = body[1:]
	}
	return corr, body
}

// decodeReply reads a deny reply body with kmsg and checks that kmsg
// writes the same bytes back: the reply has exactly the version's layout.
func decodeReply(t *testing.T, key, v int16, body []byte) kmsg.Response {
	t.Helper()
	resp := kmsg.ResponseForKey(key)
	resp.SetVersion(v)
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("kmsg cannot read the deny reply %x: %v", body, err)
	}
	if again := resp.AppendTo(nil); !bytes.Equal(again, body) {
		t.Fatalf("deny reply differs from kmsg's encoding of what it read:\n ours %x\nkmsg's %x", body, again)
	}
	return resp
}

// collected is what a kmsg message holds, found by field name.
type collected struct {
	errors     []int16
	topics     []string
	ids        [][16]byte
	partitions []int32
	groups     []string
}

func collect(v reflect.Value, c *collected) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			collect(v.Elem(), c)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			collect(v.Index(i), c)
		}
	case reflect.Struct:
		ty := v.Type()
		for i := 0; i < v.NumField(); i++ {
			fv, name := v.Field(i), ty.Field(i).Name
			switch {
			case name == "ErrorCode" && fv.Kind() == reflect.Int16:
				c.errors = append(c.errors, int16(fv.Int()))
			case name == "Topic" && fv.Kind() == reflect.String:
				c.topics = append(c.topics, fv.String())
			case name == "Topic" && fv.Kind() == reflect.Pointer && !fv.IsNil():
				c.topics = append(c.topics, fv.Elem().String())
			case name == "TopicID":
				c.ids = append(c.ids, fv.Interface().([16]byte))
			case name == "Partition" && fv.Kind() == reflect.Int32:
				c.partitions = append(c.partitions, int32(fv.Int()))
			case (name == "Group" || name == "Key" || name == "TransactionalID") && fv.Kind() == reflect.String:
				c.groups = append(c.groups, fv.String())
			default:
				collect(fv, c)
			}
		}
	}
}

// byID reports whether requests of key at version v name topics by id.
func byID(key, v int16) bool {
	switch key {
	case keyProduce, keyFetch:
		return v >= 13
	case keyOffsetCommit, keyOffsetFetch:
		return v >= 10
	case keyTxnOffsetCommit:
		return v >= 6
	}
	return false
}

// partitionLevel reports whether the deny reply of key carries an error
// per partition (else per topic).
func partitionLevel(key int16) bool {
	switch key {
	case keyMetadata, keyCreateTopics, keyDeleteTopics:
		return false
	}
	return true
}

// TestEveryVersionOfTopicAPIs writes every version of every API whose
// topics the parser reads with kmsg, parses it, denies it, and reads the
// deny reply back with kmsg: the frame names the topics (by name, also
// when the request names them by id and a Metadata reply taught the id),
// and the reply carries TOPIC_AUTHORIZATION_FAILED for every topic or
// partition, echoed as the request named them.
func TestEveryVersionOfTopicAPIs(t *testing.T) {
	keys := []int16{keyProduce, keyFetch, keyListOffsets, keyMetadata, keyOffsetCommit, keyOffsetFetch,
		keyCreateTopics, keyDeleteTopics, keyDeleteRecords, keyOffsetForLeaderEpoch, keyAddPartitionsToTxn,
		keyTxnOffsetCommit}
	for _, key := range keys {
		for v := int16(0); v <= apis[key].maxVersion; v++ {
			t.Run(fmt.Sprintf("%s/v%d", apis[key].name, v), func(t *testing.T) {
				groups := []string{"txn-a"}
				if key == keyOffsetFetch {
					groups = []string{"g1", "g2"}
				}
				msg := encodeRequest(buildRequest(key, v, testTopics, groups), v, 7, "client-1")
				p := NewParser()
				for _, tt := range testTopics {
					p.ids.insert(tt.id[:], []byte(tt.name))
				}
				var f l7.Frame
				op, n, err := p.Parse(l7.DirRequest, msg, &f)
				if err != nil || op != l7.OpFrame || n != len(msg) {
					t.Fatalf("Parse = %v %d %v, want frame %d", op, n, err, len(msg))
				}
				if string(f.Verb) != apis[key].name || string(f.Aux) != "client-1" || f.Args != frameArgs(key, v, 7) {
					t.Fatalf("frame verb %q aux %q args %x", f.Verb, f.Aux, f.Args)
				}
				var got []string
				f.Resources(func(r []byte) bool { got = append(got, string(r)); return true })
				want := []string{"orders", "audit.log-1"}
				if !slices.Equal(got, want) {
					t.Fatalf("resources %q, want %q", got, want)
				}
				out := Deny(nil, &f, "no rule allows it")
				if len(out) == 0 {
					t.Fatal("no deny reply")
				}
				corr, body := replyBody(t, out, key, v)
				if corr != 7 {
					t.Fatalf("correlation id %d", corr)
				}
				var c collected
				collect(reflect.ValueOf(decodeReply(t, key, v, body)), &c)
				checkEcho(t, key, v, &c, groups)
			})
		}
	}
}

func checkEcho(t *testing.T, key, v int16, c *collected, groups []string) {
	t.Helper()
	nTopics, nParts := len(testTopics), 0
	var wantParts []int32
	for _, tt := range testTopics {
		nParts += len(tt.parts)
		wantParts = append(wantParts, tt.parts...)
	}
	n29 := 0
	for _, e := range c.errors {
		switch e {
		case errTopicAuthorizationFailed:
			n29++
		case 0, errGroupAuthorizationFailed:
		default:
			t.Errorf("error code %d in the reply", e)
		}
	}
	want29 := nTopics
	if partitionLevel(key) {
		want29 = nParts
		got := slices.Clone(c.partitions)
		sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
		w := slices.Clone(wantParts)
		sort.Slice(w, func(i, j int) bool { return w[i] < w[j] })
		if !slices.Equal(got, w) {
			t.Errorf("partitions %v, want %v", got, w)
		}
	}
	if key == keyAddPartitionsToTxn && v >= 4 {
		want29 *= len(groups)
	}
	if n29 != want29 {
		t.Errorf("%d TOPIC_AUTHORIZATION_FAILED, want %d (errors %v)", n29, want29, c.errors)
	}
	if byID(key, v) {
		var ids [][16]byte
		for _, id := range c.ids {
			if id != ([16]byte{}) {
				ids = append(ids, id)
			}
		}
		if len(ids) != nTopics || ids[0] != testTopics[0].id || ids[1] != testTopics[1].id {
			t.Errorf("topic ids %x", c.ids)
		}
	} else if len(c.topics) < nTopics || c.topics[0] != "orders" || c.topics[1] != "audit.log-1" {
		t.Errorf("topics %q", c.topics)
	}
	if key == keyOffsetFetch && v >= 8 && !slices.Equal(c.groups, groups) {
		t.Errorf("groups %q, want %q", c.groups, groups)
	}
}

// TestEveryVersionOfTheOtherAPIs writes every version of every API the
// table knows with kmsg (default fields): each is framed with its name and
// no topics, and where the package has a deny reply, kmsg reads it back
// with the API's error code.
func TestEveryVersionOfTheOtherAPIs(t *testing.T) {
	for key := int16(0); int(key) < len(apis); key++ {
		if requestSchema(key, 0) != nil && key != keyFindCoordinator && key != keyDescribeGroups &&
			key != keyDeleteGroups && key != keyInitProducerID {
			continue // topic APIs: above
		}
		for v := int16(0); v <= apis[key].maxVersion; v++ {
			if (key == keyControlledShutdown || key == keySaslHandshake) && v == 0 {
				continue
			}
			req := buildRequest(key, v, nil, []string{"group-a", "group-b"})
			if req == nil {
				continue
			}
			t.Run(fmt.Sprintf("%s/v%d", apis[key].name, v), func(t *testing.T) {
				msg := encodeRequest(req, v, 99, "c")
				p := NewParser()
				var f l7.Frame
				total := 0
				for rest := msg; len(rest) > 0; {
					op, n, err := p.Parse(l7.DirRequest, rest, &f)
					if err != nil || op == l7.OpMore {
						t.Fatalf("Parse = %v %d %v", op, n, err)
					}
					if total == 0 {
						if op != l7.OpFrame || string(f.Verb) != apis[key].name || f.Resource != nil {
							t.Fatalf("first answer %v %d verb %q resource %q", op, n, f.Verb, f.Resource)
						}
					} else if op != l7.OpSkip {
						t.Fatalf("body answer %v", op)
					}
					if total == 0 && op == l7.OpFrame {
						defer func(f l7.Frame) { checkOtherDeny(t, key, v, &f) }(f)
					}
					total += n
					rest = rest[n:]
				}
			})
		}
	}
}

func checkOtherDeny(t *testing.T, key, v int16, f *l7.Frame) {
	t.Helper()
	out := Deny(nil, f, "no rule")
	rs := replySchemaFor(key, v)
	if rs == nil {
		if len(out) != 0 {
			t.Fatalf("deny reply %x for an API without one", out)
		}
		return
	}
	corr, body := replyBody(t, out, key, v)
	if corr != 99 {
		t.Fatalf("correlation id %d", corr)
	}
	var c collected
	collect(reflect.ValueOf(decodeReply(t, key, v, body)), &c)
	want := rs.code
	if key == keyInitProducerID {
		want = errTransactionalIDAuthorizationFail
	}
	if !slices.Contains(c.errors, want) {
		t.Fatalf("errors %v, want %d", c.errors, want)
	}
	switch key {
	case keyDescribeGroups, keyDeleteGroups:
		if !slices.Equal(c.groups, []string{"group-a", "group-b"}) {
			t.Fatalf("groups %q", c.groups)
		}
	case keyFindCoordinator:
		if v >= 4 && !slices.Equal(c.groups, []string{"group-a", "group-b"}) {
			t.Fatalf("keys %q", c.groups)
		}
	}
}

// TestTopicIDsUnresolved: a request naming a topic by an id no Metadata
// reply taught is framed with the id's text form, as Kafka prints ids.
func TestTopicIDsUnresolved(t *testing.T) {
	msg := encodeRequest(buildRequest(keyProduce, 13, testTopics[:1], nil), 13, 1, "c")
	var f l7.Frame
	if op, _, err := NewParser().Parse(l7.DirRequest, msg, &f); op != l7.OpFrame || err != nil {
		t.Fatal(op, err)
	}
	if want := base64.RawURLEncoding.EncodeToString(testTopics[0].id[:]); string(f.Resource) != want || len(want) != idTextLen {
		t.Fatalf("resource %q, want %q", f.Resource, want)
	}
}
