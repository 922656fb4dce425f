// Package streams helps the control plane's gRPC handlers of long-lived
// client streams (flow reports, Envoy access logs) stop when the server
// stops: a pending Recv cannot be interrupted, so a Receiver runs it on a
// goroutine of its own and the handler waits on either the next message or
// the server's stop signal.
package streams

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrStopping is what Next returns once the server stops: the client
// reconnects (to another replica, or to this one when it is back).
var ErrStopping = status.Error(codes.Unavailable, "control plane shutting down")

type result[T any] struct {
	msg T
	err error
}

// Receiver hands a stream's messages to its handler. Its goroutine ends
// when Recv fails, which it does once the handler returns (gRPC cancels the
// stream then); Close must be deferred by the handler.
type Receiver[T any] struct {
	ch   chan result[T]
	done chan struct{}
	stop <-chan struct{}
}

// NewReceiver starts receiving with recv (the stream's Recv). stop is
// closed when the server stops.
func NewReceiver[T any](recv func() (T, error), stop <-chan struct{}) *Receiver[T] {
	r := &Receiver[T]{ch: make(chan result[T]), done: make(chan struct{}), stop: stop}
	go func() {
		for {
			m, err := recv()
			select {
			case r.ch <- result[T]{m, err}:
			case <-r.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

// Next returns the next message, Recv's error (io.EOF when the client closed
// its side), or ErrStopping once stop is closed.
func (r *Receiver[T]) Next() (T, error) {
	select {
	case res := <-r.ch:
		return res.msg, res.err
	case <-r.stop:
		var zero T
		return zero, ErrStopping
	}
}

// Close releases the receiving goroutine; the handler defers it.
func (r *Receiver[T]) Close() { close(r.done) }
