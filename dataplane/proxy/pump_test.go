package proxy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestPump: pump carries a stream exactly — below spliceAfter (user space
// only) and across it (user space, then splice) — written in random
// pieces, returns at the writer's end of stream with the byte count, and
// reports a reset peer as an error.
func TestPump(t *testing.T) {
	for _, size := range []int{0, 10, spliceAfter - 1, spliceAfter, spliceAfter + 1, 3<<20 + 7} {
		writer, src := tcpPair(t)
		dst, reader := tcpPair(t)
		data := make([]byte, size)
		rng := rand.New(rand.NewPCG(uint64(size), 1))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		go func() {
			for rest := data; len(rest) > 0; {
				k := min(len(rest), 1+rng.IntN(20000))
				if _, err := writer.Write(rest[:k]); err != nil {
					return
				}
				rest = rest[k:]
			}
			_ = writer.CloseWrite()
		}()
		type res struct {
			n   int64
			err error
		}
		done := make(chan res, 1)
		go func() {
			n, err := pump(dst, src)
			_ = dst.CloseWrite()
			done <- res{n, err}
		}()
		_ = reader.SetReadDeadline(time.Now().Add(20 * time.Second))
		got, err := io.ReadAll(reader)
		if err != nil {
			t.Fatalf("%d bytes: read: %v", size, err)
		}
		r := <-done
		if r.err != nil || r.n != int64(size) {
			t.Errorf("%d bytes: pump returned %d, %v", size, r.n, r.err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%d bytes: received %d bytes, not the ones sent", size, len(got))
		}
	}

	// A reset peer ends pump with an error, not as an end of stream.
	writer, src := tcpPair(t)
	dst, _ := tcpPair(t)
	_, _ = writer.Write([]byte("x"))
	_ = writer.SetLinger(0)
	_ = writer.Close()
	if _, err := pump(dst, src); err == nil {
		t.Error("pump after a reset: no error")
	}
}

// TestSockWriterAllocs: a write through sockWriter, the L7 path's writer
// of every forwarded message, allocates nothing, and the bytes arrive.
func TestSockWriterAllocs(t *testing.T) {
	a, b := tcpPair(t)
	w := newSockWriter(a)
	if _, ok := w.(*sockWriter); !ok {
		t.Fatalf("newSockWriter returned %T", w)
	}
	msg := []byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
	const runs = 100
	if n := testing.AllocsPerRun(runs, func() {
		if _, err := w.Write(msg); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("sockWriter.Write: %v allocations, want 0", n)
	}
	want := bytes.Repeat(msg, runs+1) // AllocsPerRun runs once more to warm up
	got := make([]byte, len(want))
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, want) {
		t.Errorf("received %q, %v", got, err)
	}
}
