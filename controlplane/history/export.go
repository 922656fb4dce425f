package history

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Exporter ships written windows to another system. Export is called from
// one goroutine at a time, with the records of one window (oldest last
// seen first); the slice is valid only during the call.
type Exporter interface {
	Export(ctx context.Context, recs []Record) error
}

// JSONLines writes records as JSON lines (the history's own file format) to
// W, one Write per window.
type JSONLines struct {
	mu sync.Mutex
	w  io.Writer
}

var _ Exporter = (*JSONLines)(nil)

// NewJSONLines returns an exporter writing to w.
func NewJSONLines(w io.Writer) *JSONLines { return &JSONLines{w: w} }

// Export writes recs.
func (j *JSONLines) Export(_ context.Context, recs []Record) error {
	var buf []byte
	for i := range recs {
		var err error
		if buf, err = appendJSONLine(buf, &recs[i]); err != nil {
			return err
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.w.Write(buf); err != nil {
		return fmt.Errorf("history: export: %w", err)
	}
	return nil
}

// OpenFile opens path for appending JSON lines (creating it) and returns
// the exporter and the file, which the caller closes after Start returned.
func OpenFile(path string) (*JSONLines, io.Closer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("history: export file: %w", err)
	}
	return NewJSONLines(f), f, nil
}

// Socket writes records as JSON lines to a stream socket ("tcp" or "unix"),
// dialled on the first export and again after a failed write. A window
// that cannot be written is lost for the socket (the history keeps it).
type Socket struct {
	network, addr string
	timeout       time.Duration

	mu   sync.Mutex
	conn net.Conn
}

var _ Exporter = (*Socket)(nil)

// NewSocket returns an exporter to network/addr. Dial and write are each
// bounded by timeout (zero: 5s). It dials nothing until the first Export.
func NewSocket(network, addr string, timeout time.Duration) *Socket {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Socket{network: network, addr: addr, timeout: timeout}
}

// Export writes recs, dialling first when needed.
func (s *Socket) Export(ctx context.Context, recs []Record) error {
	var buf []byte
	for i := range recs {
		var err error
		if buf, err = appendJSONLine(buf, &recs[i]); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		d := net.Dialer{Timeout: s.timeout}
		c, err := d.DialContext(ctx, s.network, s.addr)
		if err != nil {
			return fmt.Errorf("history: export to %s: %w", s.addr, err)
		}
		s.conn = c
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.conn.Write(buf); err != nil {
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("history: export to %s: %w", s.addr, err)
	}
	return nil
}

// Close closes the connection, if any.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
