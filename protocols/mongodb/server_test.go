package mongodb

// No MongoDB server is packaged for this machine (Debian ships none), so
// these tests drive the parser with the official Go driver's real wire
// messages against a minimal responder written here: a TCP server that
// answers the handshake (hello/isMaster) and simple commands with {ok: 1}
// replies built with the driver's bson package. A relay between them
// frames both directions with the parser and answers denied commands with
// Deny. go test -record rewrites the recordings in testdata/.

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

var record = flag.Bool("record", false, "rewrite the recordings in testdata (go-driver-*.req, test-responder-*.reply)")

// startResponder runs the minimal MongoDB responder on 127.0.0.1 until the
// test ends and returns its address.
func startResponder(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id := int32(1); ; id++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				respond(c, id)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// respond answers the messages of one connection until it closes.
func respond(c net.Conn, connID int32) {
	var reqID int32 = 1000
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(hdr[:]))
		if n < 16 || n > DefaultMaxMessage {
			return
		}
		msg := make([]byte, n)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(c, msg[16:]); err != nil {
			return
		}
		id := int32(binary.LittleEndian.Uint32(msg[4:]))
		var out []byte
		reqID++
		switch binary.LittleEndian.Uint32(msg[12:]) {
		case OpQuery:
			i := 20
			for i < len(msg) && msg[i] != 0 {
				i++
			}
			doc := bson.Raw(msg[i+1+8:])
			doc = doc[:binary.LittleEndian.Uint32(doc)]
			body, err := bson.Marshal(answer(doc, 0, connID))
			if err != nil {
				return
			}
			out = binary.LittleEndian.AppendUint32(nil, uint32(16+20+len(body)))
			out = binary.LittleEndian.AppendUint32(out, uint32(reqID))
			out = binary.LittleEndian.AppendUint32(out, uint32(id))
			out = binary.LittleEndian.AppendUint32(out, OpReply)
			out = append(out, make([]byte, 16)...)
			out = binary.LittleEndian.AppendUint32(out, 1)
			out = append(out, body...)
		case OpMsg:
			flags := binary.LittleEndian.Uint32(msg[16:])
			var body bson.Raw
			docs := 0
			for i := 20; i < len(msg)-int(flags&1)*4; {
				size := int(binary.LittleEndian.Uint32(msg[i+1:]))
				if msg[i] == 0 {
					body = msg[i+1 : i+1+size]
					i += 1 + size
					continue
				}
				seq := msg[i+5 : i+1+size]
				j := 0
				for j < len(seq) && seq[j] != 0 {
					j++
				}
				for k := j + 1; k < len(seq); k += int(binary.LittleEndian.Uint32(seq[k:])) {
					docs++
				}
				i += 1 + size
			}
			if flags&FlagMoreToCome != 0 {
				continue // unacknowledged: no reply
			}
			b, err := bson.Marshal(answer(body, docs, connID))
			if err != nil {
				return
			}
			out = binary.LittleEndian.AppendUint32(nil, uint32(16+5+len(b)))
			out = binary.LittleEndian.AppendUint32(out, uint32(reqID))
			out = binary.LittleEndian.AppendUint32(out, uint32(id))
			out = binary.LittleEndian.AppendUint32(out, OpMsg)
			out = binary.LittleEndian.AppendUint32(out, 0)
			out = append(out, 0)
			out = append(out, b...)
		default:
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// answer builds the reply document for a command.
func answer(cmd bson.Raw, docs int, connID int32) bson.D {
	elems, err := cmd.Elements()
	if err != nil || len(elems) == 0 {
		return bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "bad command"}}
	}
	name := elems[0].Key()
	coll, _ := elems[0].Value().StringValueOK()
	db, _ := cmd.Lookup("$db").StringValueOK()
	ns := db + "." + coll
	cursor := func(batch bson.A) bson.D {
		return bson.D{{Key: "cursor", Value: bson.D{{Key: "firstBatch", Value: batch}, {Key: "id", Value: int64(0)}, {Key: "ns", Value: ns}}}, {Key: "ok", Value: 1.0}}
	}
	switch name {
	case "hello", "isMaster", "ismaster":
		return bson.D{
			{Key: "helloOk", Value: true}, {Key: "ismaster", Value: true}, {Key: "isWritablePrimary", Value: true},
			{Key: "maxBsonObjectSize", Value: int32(16 << 20)}, {Key: "maxMessageSizeBytes", Value: int32(DefaultMaxMessage)},
			{Key: "maxWriteBatchSize", Value: int32(100000)}, {Key: "localTime", Value: bson.NewDateTimeFromTime(time.Unix(1700000000, 0))},
			{Key: "logicalSessionTimeoutMinutes", Value: int32(30)}, {Key: "connectionId", Value: connID},
			{Key: "minWireVersion", Value: int32(0)}, {Key: "maxWireVersion", Value: int32(21)},
			{Key: "readOnly", Value: false}, {Key: "ok", Value: 1.0},
		}
	case "find":
		return cursor(bson.A{bson.D{{Key: "_id", Value: int32(1)}, {Key: "x", Value: "a"}}})
	case "aggregate":
		return cursor(bson.A{bson.D{{Key: "_id", Value: nil}, {Key: "n", Value: int32(3)}}})
	case "listCollections":
		ns = db + ".$cmd.listCollections"
		return cursor(bson.A{bson.D{{Key: "name", Value: "things"}, {Key: "type", Value: "collection"}}})
	case "insert", "delete", "update":
		return bson.D{{Key: "n", Value: int32(max(docs, 1))}, {Key: "ok", Value: 1.0}}
	case "drop":
		return bson.D{{Key: "ns", Value: ns}, {Key: "nIndexesWas", Value: int32(1)}, {Key: "ok", Value: 1.0}}
	}
	return bson.D{{Key: "ok", Value: 1.0}}
}

// relayConn is what the relay saw on one connection.
type relayConn struct {
	req, rep      []byte // bytes the client sent, the server answered
	forwarded     int    // request frames forwarded that expect a reply
	denied        int    // request frames denied (answered by the relay)
	noReply       int    // request frames forwarded with NoReply
	replies       int    // final reply frames
	partial       int    // Partial reply frames
	verbs         []string
	parseErr      error
	deniedReplies [][]byte
}

// relay forwards connections to server through the parser; deny, when not
// nil, says which request frames to answer with Deny instead.
type relay struct {
	t      *testing.T
	server string
	deny   func(f *l7.Frame) bool
	mu     sync.Mutex
	conns  []*relayConn
}

func startRelay(t *testing.T, server string, deny func(f *l7.Frame) bool) (*relay, string) {
	t.Helper()
	r := &relay{t: t, server: server, deny: deny}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", server)
			if err != nil {
				c.Close()
				continue
			}
			rc := &relayConn{}
			r.mu.Lock()
			r.conns = append(r.conns, rc)
			open = append(open, c, s)
			r.mu.Unlock()
			p := NewParser()
			var wmu sync.Mutex // client writes
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer s.Close()
				r.requests(c, s, p, rc, &wmu)
			}()
			go func() {
				defer wg.Done()
				defer c.Close()
				r.replies(s, c, p, rc, &wmu)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, c := range open {
			c.Close()
		}
		r.mu.Unlock()
		wg.Wait()
	})
	return r, ln.Addr().String()
}

func (r *relay) requests(c, s net.Conn, p *Parser, rc *relayConn, wmu *sync.Mutex) {
	var buf []byte
	chunk := make([]byte, 64<<10)
	dropping := false
	for {
		n, err := c.Read(chunk)
		r.mu.Lock()
		rc.req = append(rc.req, chunk[:n]...)
		r.mu.Unlock()
		buf = append(buf, chunk[:n]...)
		for {
			var f l7.Frame
			op, m, perr := p.Parse(l7.DirRequest, buf, &f)
			if perr != nil {
				r.mu.Lock()
				rc.parseErr = perr
				r.mu.Unlock()
				return
			}
			if op == l7.OpMore {
				break
			}
			piece := buf[:m]
			if op == l7.OpFrame {
				r.mu.Lock()
				rc.verbs = append(rc.verbs, string(f.Verb))
				dropping = r.deny != nil && r.deny(&f)
				switch {
				case dropping:
					rc.denied++
				case f.NoReply:
					rc.noReply++
				default:
					rc.forwarded++
				}
				r.mu.Unlock()
				if dropping {
					reply := Deny(nil, &f, "test policy")
					r.mu.Lock()
					rc.deniedReplies = append(rc.deniedReplies, reply)
					r.mu.Unlock()
					wmu.Lock()
					_, werr := c.Write(reply)
					wmu.Unlock()
					if werr != nil {
						return
					}
				}
			}
			if !dropping {
				if _, werr := s.Write(piece); werr != nil {
					return
				}
			}
			buf = buf[m:]
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) replies(s, c net.Conn, p *Parser, rc *relayConn, wmu *sync.Mutex) {
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		n, err := s.Read(chunk)
		r.mu.Lock()
		rc.rep = append(rc.rep, chunk[:n]...)
		r.mu.Unlock()
		buf = append(buf, chunk[:n]...)
		for {
			var f l7.Frame
			op, m, perr := p.Parse(l7.DirReply, buf, &f)
			if perr != nil {
				r.mu.Lock()
				rc.parseErr = perr
				r.mu.Unlock()
				return
			}
			if op == l7.OpMore {
				break
			}
			if op == l7.OpFrame {
				r.mu.Lock()
				if f.Partial {
					rc.partial++
				} else {
					rc.replies++
				}
				r.mu.Unlock()
			}
			wmu.Lock()
			_, werr := c.Write(buf[:m])
			wmu.Unlock()
			if werr != nil {
				return
			}
			buf = buf[m:]
		}
		if err != nil {
			return
		}
	}
}

// snapshot returns copies of what the relay saw so far.
func (r *relay) snapshot() []relayConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]relayConn, len(r.conns))
	for i, c := range r.conns {
		out[i] = *c
		out[i].req = append([]byte(nil), c.req...)
		out[i].rep = append([]byte(nil), c.rep...)
		out[i].verbs = append([]string(nil), c.verbs...)
	}
	return out
}

func connect(t *testing.T, addr string) *mongo.Client {
	t.Helper()
	cl, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + addr + "/?directConnection=true&serverSelectionTimeoutMS=5000&connectTimeoutMS=5000").SetMaxPoolSize(1))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// crud runs the driver operations of the recordings.
func crud(ctx context.Context, t *testing.T, cl *mongo.Client) {
	t.Helper()
	coll := cl.Database("shop").Collection("things")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "x", Value: "a"}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if _, err := coll.InsertMany(ctx, []any{bson.D{{Key: "x", Value: "b"}}, bson.D{{Key: "x", Value: "c"}}}); err != nil {
		t.Fatalf("insert many: %v", err)
	}
	unack := cl.Database("shop").Collection("events", options.Collection().SetWriteConcern(writeconcern.Unacknowledged()))
	if _, err := unack.InsertOne(ctx, bson.D{{Key: "e", Value: 1}}); err != nil {
		t.Fatalf("unacknowledged insert: %v", err)
	}
	cur, err := coll.Find(ctx, bson.D{{Key: "x", Value: "a"}})
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	var docs []bson.M
	if err := cur.All(ctx, &docs); err != nil || len(docs) != 1 {
		t.Fatalf("find: %v %v", docs, err)
	}
	agg, err := coll.Aggregate(ctx, mongo.Pipeline{{{Key: "$count", Value: "n"}}})
	if err != nil {
		t.Fatalf("aggregate: %v", err)
	}
	if err := agg.All(ctx, &docs); err != nil {
		t.Fatalf("aggregate: %v", err)
	}
	names, err := cl.Database("shop").ListCollectionNames(ctx, bson.D{})
	if err != nil || len(names) != 1 || names[0] != "things" {
		t.Fatalf("listCollections: %v %v", names, err)
	}
	if _, err := coll.DeleteOne(ctx, bson.D{{Key: "x", Value: "b"}}); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

// TestDriverThroughRelay runs the Go driver against the responder through
// a relay that frames both directions with the parser and denies drop: the
// driver must surface a CommandError with code 13 and keep working, and
// on every connection each forwarded request must get one final reply.
func TestDriverThroughRelay(t *testing.T) {
	server := startResponder(t)
	denyDrop := func(f *l7.Frame) bool { return string(f.Verb) == "drop" }
	r, addr := startRelay(t, server, denyDrop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := connect(t, addr)
	crud(ctx, t, cl)
	err := cl.Database("shop").Collection("things").Drop(ctx)
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != DenyCode || ce.Name != "Unauthorized" {
		t.Fatalf("drop: %v (%T), want a CommandError with code 13", err, err)
	}
	cur, err := cl.Database("shop").Collection("things").Find(ctx, bson.D{})
	if err != nil {
		t.Fatalf("find after the denied drop: %v", err)
	}
	var docs []bson.M
	if err := cur.All(ctx, &docs); err != nil || len(docs) != 1 {
		t.Fatalf("find after the denied drop: %v %v", docs, err)
	}
	if err := cl.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, r)
	verbs := map[string]bool{}
	denied := 0
	for i, c := range r.snapshot() {
		if c.parseErr != nil {
			t.Fatalf("connection %d: %v", i, c.parseErr)
		}
		if c.forwarded != c.replies {
			t.Errorf("connection %d: %d requests forwarded, %d final replies (verbs %v)", i, c.forwarded, c.replies, c.verbs)
		}
		for _, v := range c.verbs {
			verbs[v] = true
		}
		denied += c.denied
	}
	for _, v := range []string{"insert", "find", "aggregate", "listCollections", "delete", "drop"} {
		if !verbs[v] {
			t.Errorf("no %q frame seen; verbs %v", v, verbs)
		}
	}
	if denied != 1 {
		t.Errorf("%d requests denied, want 1", denied)
	}
}

// waitIdle waits until every relayed connection's replies match its
// requests (the last replies may still be in flight) or a second passes.
func waitIdle(t *testing.T, r *relay) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		done := true
		for _, c := range r.snapshot() {
			if c.forwarded != c.replies {
				done = false
			}
		}
		if done {
			return
		}
	}
}

// TestRecordDriver runs the recordings' scenario through a relay that
// denies nothing and checks the frame counts; with -record it writes each
// connection's bytes to testdata.
func TestRecordDriver(t *testing.T) {
	server := startResponder(t)
	r, addr := startRelay(t, server, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := connect(t, addr)
	crud(ctx, t, cl)
	if err := cl.Database("shop").Collection("things").Drop(ctx); err != nil {
		t.Fatalf("drop: %v", err)
	}
	if err := cl.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, r)
	conns := r.snapshot()
	for i, c := range conns {
		if c.parseErr != nil || c.forwarded != c.replies {
			t.Fatalf("connection %d: %v; %d requests, %d replies", i, c.parseErr, c.forwarded, c.replies)
		}
	}
	if !*record {
		return
	}
	old, _ := filepath.Glob(filepath.Join("testdata", "go-driver-*"))
	more, _ := filepath.Glob(filepath.Join("testdata", "test-responder-*"))
	for _, name := range append(old, more...) {
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range conns {
		if len(c.req) == 0 {
			continue
		}
		name := fmt.Sprintf("crud-conn%d", i+1)
		if err := os.WriteFile(filepath.Join("testdata", "go-driver-2.10-"+name+".req"), c.req, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "test-responder-"+name+".reply"), c.rep, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
