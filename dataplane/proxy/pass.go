package proxy

import (
	"io"
	"time"
)

// aLongTimeAgo is a read deadline in the past: it wakes a blocked Read.
var aLongTimeAgo = time.Unix(1, 0)

// startPass switches the connection to pass mode (the parser answered
// OpPass): both directions stop parsing and splice the rest. It wakes the
// reader of each side, so that the direction that did not pass notices;
// when it returns, both wake-ups are done, so that each direction may clear
// its own read deadline.
func (s *session) startPass() {
	s.passOnce.Do(func() {
		s.passing.Store(true)
		// Spliced from now on: TCP must find a dead peer (keepalive.go).
		armKeepAlive(s.client)
		armKeepAlive(s.upstream)
		if s.client != nil {
			_ = s.client.SetReadDeadline(aLongTimeAgo)
		}
		if s.upstream != nil {
			_ = s.upstream.SetReadDeadline(aLongTimeAgo)
		}
	})
}

// passRequests forwards the client's bytes that were read but not parsed
// (rest), then splices the client to the workload until the client is done.
func (s *session) passRequests(rest []byte) {
	s.p.log.Debug("proxy: connection passed, forwarding the rest unparsed", "src", s.src.String(),
		"dst", s.dst.String(), "protocol", s.proto.Name)
	_ = s.client.SetReadDeadline(time.Time{})
	if err := s.write(rest); err != nil {
		reset(s.client)
		_ = s.upstream.Close()
		return
	}
	// Spliced once past the first bytes (pump).
	n, err := pump(s.upstream, s.client)
	s.bytesIn.Add(float64(n))
	if err != nil {
		reset(s.client)
		_ = s.upstream.Close()
		return
	}
	_ = s.upstream.CloseWrite()
}

// passReplies forwards the workload's bytes that were read but not parsed
// (rest), then splices the workload to the client until it is done. A
// denial still waiting for a reply cannot be placed in an unparsed stream:
// the connection then ends with errPassPending.
func (s *session) passReplies(rest []byte) error {
	_ = s.upstream.SetReadDeadline(time.Time{})
	// Any deny reply being written by the request goroutine is out once
	// wmu is free; later ones see passing and are not written.
	s.wmu.Lock()
	s.smu.Lock()
	pending := s.ph < len(s.pend)
	s.smu.Unlock()
	final := s.finalSent
	s.wmu.Unlock()
	if final {
		return errFinal
	}
	if pending {
		return errPassPending
	}
	if len(rest) > 0 {
		if _, err := s.client.Write(rest); err != nil {
			return err
		}
		s.bytesOut.Add(float64(len(rest)))
	}
	n, err := pump(s.client, s.upstream)
	s.bytesOut.Add(float64(n))
	if err != nil {
		return err
	}
	_ = s.client.CloseWrite()
	return nil
}

// closeAfterDeny ends a connection whose protocol cannot go on past a deny
// reply (CloseOnDeny): once the reply is out (or the workload side ended
// first), the workload connection is closed and the client gets a FIN, not
// an RST, so that the reply is delivered; what the client still sends is
// read and dropped until it closes or lingerTimeout passes.
func (s *session) closeAfterDeny(repDone <-chan struct{}) {
	select {
	case <-s.final:
	case <-repDone:
	}
	_ = s.upstream.Close()
	if err := s.client.CloseWrite(); err != nil {
		return
	}
	_ = s.client.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.Copy(io.Discard, s.client)
}
