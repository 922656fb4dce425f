package streams

import (
	"errors"
	"io"
	"testing"

	"go.uber.org/goleak"
)

func TestReceiver(t *testing.T) {
	defer goleak.VerifyNone(t)
	msgs := make(chan int)
	block := make(chan struct{})
	recv := func() (int, error) {
		select {
		case m, ok := <-msgs:
			if !ok {
				return 0, io.EOF
			}
			return m, nil
		case <-block:
			return 0, errors.New("stream cancelled")
		}
	}
	stop := make(chan struct{})
	rx := NewReceiver(recv, stop)
	go func() { msgs <- 7 }()
	if m, err := rx.Next(); m != 7 || err != nil {
		t.Fatalf("Next = %d, %v", m, err)
	}
	close(stop)
	if _, err := rx.Next(); !errors.Is(err, ErrStopping) {
		t.Fatalf("after stop: %v, want ErrStopping", err)
	}
	rx.Close()
	close(block) // what gRPC does when the handler returns
}

func TestReceiverEOF(t *testing.T) {
	defer goleak.VerifyNone(t)
	rx := NewReceiver(func() (int, error) { return 0, io.EOF }, make(chan struct{}))
	defer rx.Close()
	if _, err := rx.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next = %v, want io.EOF", err)
	}
}
