// Command mongoresponder is the minimal MongoDB server of the end-to-end
// tests (no MongoDB server is packaged here), the responder of
// protocols/mongodb's server_test.go as a program: it answers the
// handshake (OP_QUERY isMaster, OP_MSG hello) and simple commands (find,
// aggregate, listCollections, insert, update, delete, drop, anything else
// {ok: 1}) with replies built with the Go driver's bson package. It keeps
// no data: find always returns one document. It listens on -listen until
// SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/bulkhead-io/bulkhead/protocols/mongodb"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("mongoresponder", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	listen := flag.String("listen", "0.0.0.0:27017", "address to listen on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("mongo responder up", "listen", ln.Addr().String())
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for id := int32(1); ; id++ {
		c, err := ln.Accept()
		if err != nil {
			stop()
			wg.Wait()
			if errors.Is(err, net.ErrClosed) && ctx.Err() != nil {
				log.Info("mongo responder stopped")
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := respond(c, id)
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Warn("connection", "remote", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// respond answers the messages of one connection until it closes; it
// returns why it stopped (io.EOF when the client hung up).
func respond(c net.Conn, connID int32) error {
	var reqID int32 = 1000
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		n := int(binary.LittleEndian.Uint32(hdr[:]))
		if n < 21 || n > mongodb.DefaultMaxMessage {
			return fmt.Errorf("message length %d", n)
		}
		msg := make([]byte, n)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(c, msg[16:]); err != nil {
			return err
		}
		id := int32(binary.LittleEndian.Uint32(msg[4:]))
		reqID++
		var out []byte
		switch op := binary.LittleEndian.Uint32(msg[12:]); op {
		case mongodb.OpQuery:
			doc, err := opQueryDoc(msg)
			if err != nil {
				return err
			}
			body, err := bson.Marshal(answer(doc, 0, connID))
			if err != nil {
				return err
			}
			out = binary.LittleEndian.AppendUint32(nil, uint32(16+20+len(body)))
			out = binary.LittleEndian.AppendUint32(out, uint32(reqID))
			out = binary.LittleEndian.AppendUint32(out, uint32(id))
			out = binary.LittleEndian.AppendUint32(out, mongodb.OpReply)
			out = append(out, make([]byte, 16)...)
			out = binary.LittleEndian.AppendUint32(out, 1)
			out = append(out, body...)
		case mongodb.OpMsg:
			flags := binary.LittleEndian.Uint32(msg[16:])
			body, docs, err := opMsgBody(msg, flags)
			if err != nil {
				return err
			}
			if flags&mongodb.FlagMoreToCome != 0 {
				continue // unacknowledged: no reply
			}
			b, err := bson.Marshal(answer(body, docs, connID))
			if err != nil {
				return err
			}
			out = binary.LittleEndian.AppendUint32(nil, uint32(16+5+len(b)))
			out = binary.LittleEndian.AppendUint32(out, uint32(reqID))
			out = binary.LittleEndian.AppendUint32(out, uint32(id))
			out = binary.LittleEndian.AppendUint32(out, mongodb.OpMsg)
			out = binary.LittleEndian.AppendUint32(out, 0)
			out = append(out, 0)
			out = append(out, b...)
		default:
			return fmt.Errorf("opcode %d not supported", op)
		}
		if _, err := c.Write(out); err != nil {
			return err
		}
	}
}

// opQueryDoc returns the query document of an OP_QUERY message.
func opQueryDoc(msg []byte) (bson.Raw, error) {
	i := 20
	for i < len(msg) && msg[i] != 0 {
		i++
	}
	i += 1 + 8 // the NUL, numberToSkip, numberToReturn
	if i+4 > len(msg) {
		return nil, errors.New("OP_QUERY without a query")
	}
	size := int(binary.LittleEndian.Uint32(msg[i:]))
	if size < 5 || i+size > len(msg) {
		return nil, fmt.Errorf("OP_QUERY document of %d bytes", size)
	}
	return bson.Raw(msg[i : i+size]), nil
}

// opMsgBody returns the body section of an OP_MSG message and how many
// documents its document sequences hold.
func opMsgBody(msg []byte, flags uint32) (bson.Raw, int, error) {
	var body bson.Raw
	docs := 0
	end := len(msg) - int(flags&1)*4
	for i := 20; i < end; {
		if i+5 > end {
			return nil, 0, errors.New("OP_MSG section cut")
		}
		size := int(binary.LittleEndian.Uint32(msg[i+1:]))
		if size < 5 || i+1+size > end {
			return nil, 0, fmt.Errorf("OP_MSG section of %d bytes", size)
		}
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
		for k := j + 1; k+4 <= len(seq); {
			n := int(binary.LittleEndian.Uint32(seq[k:]))
			if n < 5 {
				return nil, 0, fmt.Errorf("sequence document of %d bytes", n)
			}
			docs++
			k += n
		}
		i += 1 + size
	}
	if body == nil {
		return nil, 0, errors.New("OP_MSG without a body")
	}
	return body, docs, nil
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
			{Key: "maxBsonObjectSize", Value: int32(16 << 20)}, {Key: "maxMessageSizeBytes", Value: int32(mongodb.DefaultMaxMessage)},
			{Key: "maxWriteBatchSize", Value: int32(100000)}, {Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
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
		return cursor(bson.A{bson.D{{Key: "name", Value: "orders"}, {Key: "type", Value: "collection"}}})
	case "insert", "delete", "update":
		return bson.D{{Key: "n", Value: int32(max(docs, 1))}, {Key: "ok", Value: 1.0}}
	case "drop":
		return bson.D{{Key: "ns", Value: ns}, {Key: "nIndexesWas", Value: int32(1)}, {Key: "ok", Value: 1.0}}
	}
	return bson.D{{Key: "ok", Value: 1.0}}
}
