package kafka

import (
	"encoding/binary"
	"fmt"

	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// Errors. Each wraps l7.ErrMalformed or l7.ErrTooLong; they are built once
// so that returning one allocates nothing.
var (
	errBadDir        = fmt.Errorf("kafka: unknown direction: %w", l7.ErrMalformed)
	errBadSize       = fmt.Errorf("kafka: message size too small for its header: %w", l7.ErrMalformed)
	errBadHeader     = fmt.Errorf("kafka: invalid request header: %w", l7.ErrMalformed)
	errHeaderV0      = fmt.Errorf("kafka: request header v0 (ControlledShutdown v0) is not supported: %w", l7.ErrMalformed)
	errSaslV0        = fmt.Errorf("kafka: SaslHandshake v0 (unframed SASL tokens follow) is not supported: %w", l7.ErrMalformed)
	errTruncated     = fmt.Errorf("kafka: field runs past the end of the message: %w", l7.ErrMalformed)
	errBadLength     = fmt.Errorf("kafka: invalid length or count: %w", l7.ErrMalformed)
	errBadVarint     = fmt.Errorf("kafka: invalid varint: %w", l7.ErrMalformed)
	errTrailing      = fmt.Errorf("kafka: bytes after the end of the body: %w", l7.ErrMalformed)
	errEmptyElement  = fmt.Errorf("kafka: array element of no bytes: %w", l7.ErrMalformed)
	errOutOfOrder    = fmt.Errorf("kafka: reply correlation id does not match the oldest request: %w", l7.ErrMalformed)
	errUnasked       = fmt.Errorf("kafka: reply without a request: %w", l7.ErrMalformed)
	errRequestTooBig = fmt.Errorf("kafka: request larger than MaxRequest: %w", l7.ErrTooLong)
	errReplyTooBig   = fmt.Errorf("kafka: reply larger than MaxReply: %w", l7.ErrTooLong)
)

// reader reads Kafka primitive types from b[pos:end]. Every read checks the
// bounds; a failed read returns an error and leaves pos where it was.
type reader struct {
	b        []byte
	pos, end int
	flex     bool // compact encodings
}

func (r *reader) need(n int) error {
	if n < 0 || n > r.end-r.pos {
		return errTruncated
	}
	return nil
}

func (r *reader) skip(n int) error {
	if err := r.need(n); err != nil {
		return err
	}
	r.pos += n
	return nil
}

func (r *reader) i8() (int8, error) {
	if err := r.need(1); err != nil {
		return 0, err
	}
	v := int8(r.b[r.pos])
	r.pos++
	return v, nil
}

func (r *reader) i16() (int16, error) {
	if err := r.need(2); err != nil {
		return 0, err
	}
	v := int16(binary.BigEndian.Uint16(r.b[r.pos:]))
	r.pos += 2
	return v, nil
}

func (r *reader) i32() (int32, error) {
	if err := r.need(4); err != nil {
		return 0, err
	}
	v := int32(binary.BigEndian.Uint32(r.b[r.pos:]))
	r.pos += 4
	return v, nil
}

// uvarint reads an unsigned varint of at most 5 bytes that fits 32 bits.
func (r *reader) uvarint() (uint32, error) {
	if r.pos < r.end && r.b[r.pos] < 0x80 {
		// One byte, as nearly every length and tag count is.
		v := uint32(r.b[r.pos])
		r.pos++
		return v, nil
	}
	return r.uvarintLong()
}

// uvarintLong is uvarint past its one-byte case (a longer varint, or
// none left).
func (r *reader) uvarintLong() (uint32, error) {
	var v uint32
	for i := 0; i < 5; i++ {
		if r.pos+i >= r.end {
			return 0, errTruncated
		}
		c := r.b[r.pos+i]
		if i == 4 && c > 0x0f {
			return 0, errBadVarint
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c < 0x80 {
			r.pos += i + 1
			return v, nil
		}
	}
	return 0, errBadVarint
}

// length reads a string, bytes or array length: an int16 (strings) or int32
// (bytes, arrays) in classic versions, a varint of length+1 in compact
// ones (0: null). It returns -1 for null; null is an error unless
// nullable. The length is bounded by what is left of the body, per
// element: each element takes at least one byte.
func (r *reader) length(wide, nullable bool) (int, error) {
	var n int
	if r.flex {
		if r.pos < r.end && r.b[r.pos] < 0x80 {
			n = int(r.b[r.pos]) - 1 // uvarint's one-byte case, inline
			r.pos++
		} else {
			u, err := r.uvarintLong()
			if err != nil {
				return 0, err
			}
			n = int(u) - 1
		}
	} else if wide {
		v, err := r.i32()
		if err != nil {
			return 0, err
		}
		n = int(v)
	} else {
		v, err := r.i16()
		if err != nil {
			return 0, err
		}
		n = int(v)
	}
	switch {
	case n == -1 && nullable:
		return -1, nil
	case n < 0:
		return 0, errBadLength
	case n > r.end-r.pos:
		return 0, errTruncated
	}
	return n, nil
}

// str reads a (nullable) string and returns its place; n is -1 for null.
func (r *reader) str(nullable bool) (off, n int, err error) {
	n, err = r.length(false, nullable)
	if err != nil || n < 0 {
		return 0, n, err
	}
	off = r.pos
	r.pos += n
	return off, n, nil
}

// bytes skips a (nullable) byte string.
func (r *reader) bytes(nullable bool) error {
	n, err := r.length(true, nullable)
	if err != nil || n < 0 {
		return err
	}
	r.pos += n
	return nil
}

// array reads an array's element count; -1 for null.
func (r *reader) array(nullable bool) (int, error) { return r.length(true, nullable) }

// tags skips a tagged-field section: a count, then tag, size and bytes.
func (r *reader) tags() error {
	if r.pos < r.end && r.b[r.pos] == 0 {
		r.pos++ // no tagged fields, as nearly always
		return nil
	}
	n, err := r.uvarint()
	if err != nil {
		return err
	}
	if int(n) > r.end-r.pos {
		return errTruncated
	}
	for i := uint32(0); i < n; i++ {
		if _, err := r.uvarint(); err != nil {
			return err
		}
		size, err := r.uvarint()
		if err != nil {
			return err
		}
		if err := r.skip(int(size)); err != nil {
			return err
		}
	}
	return nil
}

// Writers, for deny replies.

func appendI16(b []byte, v int16) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
func appendI32(b []byte, v int32) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)) }
func appendI64(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }

func appendUvarint(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendLen writes a length (n >= 0) or null (n == -1) of a string (int16)
// or of bytes and arrays (wide: int32), compact when flex.
func appendLen(b []byte, n int, wide, flex bool) []byte {
	switch {
	case flex:
		return appendUvarint(b, uint32(n+1))
	case wide:
		return appendI32(b, int32(n))
	}
	return appendI16(b, int16(n))
}
