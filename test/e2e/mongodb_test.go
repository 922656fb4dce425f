package e2e

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/bulkhead-io/bulkhead/cmd/bulkhead/cli"
	"github.com/bulkhead-io/bulkhead/controlplane/api/v1alpha1"
	"github.com/bulkhead-io/bulkhead/protocols/mongodb"
	"github.com/bulkhead-io/bulkhead/test/lab"
)

// The MongoDB world: no MongoDB server is packaged here, so api:27017
// (declared "mongodb") runs ./internal/mongoresponder, protocols/mongodb's
// minimal responder, which answers the handshake and commands as mongod
// does (find always returns one document); web's client is the official Go
// driver in the test process, dialing through web's namespace.
const mongoPort = 27017

// startMongoResponder returns a startFunc running the responder.
func startMongoResponder(bin string) startFunc {
	return func(ctx context.Context, h *lab.Host) (*lab.Proc, error) {
		return h.Start(ctx, bin, "-listen", fmt.Sprintf("0.0.0.0:%d", mongoPort))
	}
}

// newMongoEnv builds lab n around the responder bin (helperBin's
// mongoresponder, built before the test's clock starts).
func newMongoEnv(t *testing.T, ctx context.Context, n int, bin string) *serverEnv {
	t.Helper()
	return newServerEnv(t, ctx, n, mongoPort, v1alpha1.ProtocolMongoDB, startMongoResponder(bin))
}

// mongoClient connects the Go driver from web, with one connection for
// the operations (so that a denial and the next command share it) besides
// the driver's monitoring connection, which checks the server every half
// second (the driver's shortest interval: protect must allow it, or the
// driver would lose its server).
func mongoClient(t *testing.T, ctx context.Context, e *serverEnv) *mongo.Client {
	t.Helper()
	uri := fmt.Sprintf("mongodb://%s/?directConnection=true&serverSelectionTimeoutMS=5000&connectTimeoutMS=5000", e.ServerAddr())
	cl, err := mongo.Connect(options.Client().ApplyURI(uri).SetDialer(e.Host(webHost)).SetMaxPoolSize(1).SetAppName("shop").
		SetHeartbeatInterval(500 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cl.Disconnect(dctx)
	})
	return cl
}

// mongoWorkload is web's workload: an insert and a find on shop.orders.
func mongoWorkload(t *testing.T, ctx context.Context, cl *mongo.Client, what string) {
	t.Helper()
	orders := cl.Database("shop").Collection("orders")
	if _, err := orders.InsertOne(ctx, bson.D{{Key: "x", Value: "a"}}); err != nil {
		t.Fatalf("%s: insert: %v", what, err)
	}
	mongoFind(t, ctx, cl, what)
}

// mongoFind finds in shop.orders and checks the responder's document.
func mongoFind(t *testing.T, ctx context.Context, cl *mongo.Client, what string) {
	t.Helper()
	cur, err := cl.Database("shop").Collection("orders").Find(ctx, bson.D{{Key: "x", Value: "a"}})
	if err != nil {
		t.Fatalf("%s: find: %v", what, err)
	}
	var docs []bson.M
	if err := cur.All(ctx, &docs); err != nil || len(docs) != 1 || docs[0]["x"] != "a" {
		t.Fatalf("%s: find returned %v, %v", what, docs, err)
	}
}

// mongoRule is a rule discover learns for web: one command, its
// collections and database.
func mongoRule(cmd string, collections []string, db string) v1alpha1.Rule {
	return v1alpha1.Rule{
		Name:    "from-web-mongodb-27017-" + strings.ToLower(cmd),
		Origin:  v1alpha1.OriginLearned,
		Peers:   []v1alpha1.Peer{{Segment: webHost}},
		Ports:   []v1alpha1.PortProtocol{{Port: mongoPort, Protocol: v1alpha1.ProtocolMongoDB}},
		MongoDB: &v1alpha1.MongoDBMatch{Commands: []string{cmd}, Collections: collections, Databases: []string{db}},
	}
}

// mongoLearned is what discover must teach: per command, the collections
// and the database. The driver's handshake is a legacy OP_QUERY isMaster on
// admin, its heartbeats after it hello (the server said helloOk), and
// Disconnect ends the sessions with endSessions on admin.
func mongoLearned() []v1alpha1.Rule {
	return []v1alpha1.Rule{
		mongoRule("endSessions", nil, "admin"),
		mongoRule("find", []string{"orders"}, "shop"),
		mongoRule("hello", nil, "admin"),
		mongoRule("insert", []string{"orders"}, "shop"),
		mongoRule("isMaster", nil, "admin"),
	}
}

// waitLearnedRule polls the export until it holds a rule named name.
func waitLearnedRule(t *testing.T, ctx context.Context, e *serverEnv, name string) {
	t.Helper()
	err := e.Poll(ctx, 10*time.Second, func(ctx context.Context) (bool, error) {
		out, err := e.Client.Export(ctx, e.Namespace)
		return err == nil && strings.Contains(string(out), "name: "+name+"\n"), nil
	})
	if err != nil {
		t.Fatalf("no rule %s learned: %v", name, err)
	}
}

// TestMongoDB: in discover mode the Go driver's insert and find on
// shop.orders (and its handshake) become one learned rule per command. In
// protect they work unchanged; drop gets a CommandError with code 13
// (Unauthorized) and the next find on the same connection works;
// `bulkhead violations` lists the denial. In monitor drop reaches the
// server (its reply names the collection) and is reported.
func TestMongoDB(t *testing.T) {
	needRoot(t)
	bin := helperBin(t, "mongoresponder")
	ctx := testCtx(t)
	e := newMongoEnv(t, ctx, 45, bin)

	cl := mongoClient(t, ctx, e)
	mongoWorkload(t, ctx, cl, "discover")
	// The heartbeats (every half second) teach hello; Disconnect then
	// teaches endSessions.
	waitLearnedRule(t, ctx, e, "from-web-mongodb-27017-hello")
	if err := cl.Disconnect(ctx); err != nil {
		t.Fatalf("discover: disconnect: %v", err)
	}
	waitIngress(t, ctx, e, mongoLearned())

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeProtect)
	cl = mongoClient(t, ctx, e)
	mongoWorkload(t, ctx, cl, "protect")
	orders := cl.Database("shop").Collection("orders")
	err := orders.Drop(ctx)
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != mongodb.DenyCode || ce.Name != "Unauthorized" || !strings.Contains(ce.Message, "bulkhead") {
		t.Errorf("protect: drop: %v (%T); want a CommandError with code 13 from bulkhead", err, err)
	}
	mongoFind(t, ctx, cl, "protect, after the denied drop")
	web := e.Host(webHost).Addr().String()
	v := waitViolation(t, ctx, e.Env, "drop denied", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "DROP" && r.Resource == "orders" && r.Aux == "shop" && r.Verdict == "deny"
	})
	if v.Protocol != v1alpha1.ProtocolMongoDB || v.Reason != "l7_not_allowed" || v.Mode != "protect" || v.DstPort != mongoPort {
		t.Errorf("the drop violation: %+v", v)
	}

	setModeAndWait(t, ctx, e.Env, v1alpha1.ModeMonitor)
	res := cl.Database("shop").RunCommand(ctx, bson.D{{Key: "drop", Value: "orders"}})
	var reply bson.M
	if err := res.Decode(&reply); err != nil || reply["ns"] != "shop.orders" {
		t.Errorf("monitor: drop = %v, %v; want the server's reply naming shop.orders", reply, err)
	}
	mongoFind(t, ctx, cl, "monitor")
	waitViolation(t, ctx, e.Env, "drop in monitor", func(r cli.FlowRecord) bool {
		return r.SrcIP == web && r.Verb == "DROP" && r.Resource == "orders" && r.Verdict == "violation" && r.Mode == "monitor"
	})
	table, err := e.CLI(ctx, "violations", "-n", e.Namespace)
	if err != nil || !regexp.MustCompile(`mongodb +DROP orders \(shop\) +deny +protect`).MatchString(table) {
		t.Errorf("bulkhead violations does not list the denial:\n%s", table)
	}
	e.serverAlive(t)
}
