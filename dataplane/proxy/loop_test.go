package proxy

import (
	"bytes"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// TestLoopReadsWithoutAllocating feeds loop over a real loopback TCP
// connection: each read, taken with a pooled buffer once the socket is
// readable, allocates nothing; a message split across reads is kept whole;
// loop ends cleanly at the end of the stream.
func TestLoopReadsWithoutAllocating(t *testing.T) {
	s, _ := testSession(t, bulkheadv1.Mode_MODE_PROTECT, &recorder{}, &recorder{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server := sc.(*net.TCPConn)
	defer server.Close()
	_ = client.SetDeadline(time.Now().Add(20 * time.Second))

	msg := []byte("PING\r\n")
	got := make(chan int, 1)
	var seen []byte       // appended to only in the split phase
	var split atomic.Bool // set while the split line is fed
	split.Store(true)
	// process consumes whole lines and asks for more otherwise.
	process := func(b []byte) (int, int, error) {
		i := bytes.LastIndexByte(b, '\n')
		if i < 0 {
			return 0, 1, nil
		}
		if split.Load() {
			seen = append(seen, b[:i+1]...)
		}
		got <- i + 1
		return i + 1, 0, nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.loop(server, nil, 0, process)
		done <- err
	}()

	// A line split across two reads arrives whole.
	if _, err := client.Write([]byte("PI")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := client.Write([]byte("NG\r\n")); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != len(msg) || string(seen) != string(msg) {
		t.Fatalf("split line consumed as %d bytes %q, want %q", n, seen, msg)
	}
	split.Store(false)

	allocs := testing.AllocsPerRun(200, func() {
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		if n := <-got; n != len(msg) {
			t.Fatalf("consumed %d bytes, want %d", n, len(msg))
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message read, want 0", allocs)
	}
	_ = client.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("loop at the end of the stream: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("loop did not end after the client closed")
	}
}

// TestLoopSeesFINWithLastData: a peer that writes its last bytes and
// closes at once (data and FIN arrive together, before the proxy reads)
// ends loop at once: with TCP_INQ, a FIN counts as a byte left, so the
// reader does not wait for a readiness edge that will not come.
func TestLoopSeesFINWithLastData(t *testing.T) {
	s, _ := testSession(t, bulkheadv1.Mode_MODE_PROTECT, &recorder{}, &recorder{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := range 20 {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		server := sc.(*net.TCPConn)
		got := make(chan int, 4)
		process := func(b []byte) (int, int, error) {
			got <- len(b)
			return len(b), 0, nil
		}
		done := make(chan error, 1)
		go func() {
			_, err := s.loop(server, nil, 0, process)
			done <- err
		}()
		if i%2 == 1 {
			// Half the rounds: the reader is already waiting.
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := client.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = client.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("round %d: loop ended with %v, want nil at the end of the stream", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: loop still waits after data and FIN arrived", i)
		}
		server.Close()
		if n := len(got); n == 0 {
			t.Errorf("round %d: the last data was not processed", i)
		}
	}
}
