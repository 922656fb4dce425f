package http2

import (
	"encoding/binary"
	"strconv"

	"github.com/bulkhead-io/bulkhead/protocols/http1"
	"github.com/bulkhead-io/bulkhead/protocols/l7"
)

// maxDenyReason bounds the reason Deny copies into its reply, in bytes
// (so that grpc-message stays below 127 bytes: a one-byte HPACK length).
const maxDenyReason = 64

// Deny texts.
const (
	denyBody    = "bulkhead: request denied by policy"
	grpcMessage = "bulkhead: denied by policy"
)

// HPACK representations of the deny replies' fields, literals without
// indexing (RFC 7541 §6.2.2) so that the client's dynamic table is left
// as the server's encoder expects it.
const (
	hpStatus200   = "\x88"                         // indexed :status 200
	hpStatus403   = "\x08\x03403"                  // :status (name 8) 403
	hpTextPlain   = "\x0f\x10\x0atext/plain"       // content-type (name 31)
	hpGRPCType    = "\x0f\x10\x10application/grpc" // content-type (name 31)
	hpLength      = "\x0f\x0d"                     // content-length (name 28)
	hpGRPCStatus  = "\x00\x0bgrpc-status\x017"     // 7: PERMISSION_DENIED
	hpGRPCMessage = "\x00\x0cgrpc-message"         // then length, value
)

// Deny appends to dst the frames that answer a denied request on its
// stream (StreamID(f)) in place of the server (for an HTTP/1.1 request
// before an h2c upgrade, stream 0, http1.Deny's 403):
//
//   - gRPC (IsGRPC(f)): a trailers-only response, one HEADERS frame with
//     END_STREAM: ":status 200", "content-type application/grpc",
//     "grpc-status 7" (PERMISSION_DENIED) and "grpc-message bulkhead:
//     denied by policy (reason)", percent-encoded as gRPC requires;
//   - otherwise HEADERS ":status 403", "content-type text/plain",
//     "content-length" and a DATA frame with END_STREAM carrying
//     "bulkhead: request denied by policy (reason)\n" (HEAD: the HEADERS
//     frame alone, with END_STREAM).
//
// Fields are HPACK literals without indexing: the client's decoder state
// does not change. Only printable ASCII of reason is kept, at most 64
// bytes. Deny allocates nothing when dst has room.
func Deny(dst []byte, f *l7.Frame, reason string) []byte {
	var id uint32
	grpc, head := false, false
	if f != nil {
		id, grpc, head = StreamID(f), IsGRPC(f), string(f.Verb) == "HEAD"
	}
	if f != nil && id == 0 {
		// HTTP/1.1, before an h2c upgrade.
		return http1.Deny(dst, f, reason)
	}
	r := l7.PrintableLen(reason, maxDenyReason)
	if !l7.HasPrintable(reason) {
		r = 0
	}
	start := len(dst)
	if grpc {
		dst = appendFrameHeader(dst, 0, typeHeaders, flagEndHeaders|flagEndStream, id)
		dst = append(dst, hpStatus200...)
		dst = append(dst, hpGRPCType...)
		dst = append(dst, hpGRPCStatus...)
		dst = append(dst, hpGRPCMessage...)
		lenAt := len(dst)
		dst = append(dst, 0)
		dst = append(dst, grpcMessage...)
		if r > 0 {
			dst = append(dst, " ("...)
			dst = appendGRPCText(dst, reason, r)
			dst = append(dst, ')')
		}
		dst[lenAt] = byte(len(dst) - lenAt - 1)
		return setLength(dst, start)
	}
	n := len(denyBody) + 1
	if r > 0 {
		n += len(" ()") + r
	}
	flags := uint8(flagEndHeaders)
	if head {
		flags |= flagEndStream
	}
	dst = appendFrameHeader(dst, 0, typeHeaders, flags, id)
	dst = append(dst, hpStatus403...)
	dst = append(dst, hpTextPlain...)
	dst = append(dst, hpLength...)
	var num [4]byte
	l := strconv.AppendInt(num[:0], int64(n), 10)
	dst = append(dst, byte(len(l)))
	dst = append(dst, l...)
	dst = setLength(dst, start)
	if head {
		return dst
	}
	start = len(dst)
	dst = appendFrameHeader(dst, 0, typeData, flagEndStream, id)
	dst = append(dst, denyBody...)
	if r > 0 {
		dst = append(dst, " ("...)
		dst = l7.AppendPrintable(dst, reason, r)
		dst = append(dst, ')')
	}
	dst = append(dst, '\n')
	return setLength(dst, start)
}

// appendGRPCText appends the printable ASCII of s, at most max bytes of
// it, with '%' percent-encoded (gRPC's grpc-message encoding).
func appendGRPCText(dst []byte, s string, max int) []byte {
	for i, k := 0, 0; i < len(s) && k < max; i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f {
			continue
		}
		k++
		if c == '%' {
			dst = append(dst, "%25"...)
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// appendFrameHeader appends a frame header.
func appendFrameHeader(dst []byte, length int, typ, flags uint8, id uint32) []byte {
	dst = append(dst, byte(length>>16), byte(length>>8), byte(length), typ, flags)
	return binary.BigEndian.AppendUint32(dst, id&0x7fffffff)
}

// setLength writes the length of the frame that starts at dst[start:].
func setLength(dst []byte, start int) []byte {
	l := len(dst) - start - frameHeaderLen
	dst[start], dst[start+1], dst[start+2] = byte(l>>16), byte(l>>8), byte(l)
	return dst
}

// rejectField is the field Reject appends to a denied request's header
// block: a literal without indexing whose name has upper-case letters,
// which makes the request malformed (RFC 9113 §8.2.1), a stream error the
// server answers with RST_STREAM after decoding the whole block.
const rejectField = "\x00\x0fBulkhead-Denied\x011"

// Reject appends to dst the request header block block (HEADERS and its
// CONTINUATION frames, as Parse framed them) rewritten so that the server
// decodes it, keeping its HPACK state in step with the client's encoder,
// and refuses the stream without calling a handler: END_STREAM is set on
// the HEADERS frame (no body follows), END_HEADERS is cleared on the last
// frame, and a CONTINUATION frame with END_HEADERS carrying an upper-case
// field name ends the block. It implements l7.Multiplexer.
func (p *Parser) Reject(dst, block []byte) []byte {
	if len(block) < frameHeaderLen || block[3] != typeHeaders || (p.mode == modeH1 && !p.reqH2) {
		return dst
	}
	start := len(dst)
	dst = append(dst, block...)
	b := dst[start:]
	b[4] |= flagEndStream
	last := 0
	for off := 0; off+frameHeaderLen <= len(b); {
		last = off
		off += frameHeaderLen + (int(b[off])<<16 | int(b[off+1])<<8 | int(b[off+2]))
	}
	b[last+4] &^= flagEndHeaders
	id := binary.BigEndian.Uint32(b[5:9])
	dst = appendFrameHeader(dst, len(rejectField), typeContinuation, flagEndHeaders, id)
	return append(dst, rejectField...)
}

// Credit appends WINDOW_UPDATE frames on stream 0 that give the client n
// bytes of connection window back. It implements l7.Multiplexer.
func (p *Parser) Credit(dst []byte, n int) []byte {
	for n > 0 {
		k := min(n, 1<<31-1)
		dst = appendFrameHeader(dst, 4, typeWindowUpdate, 0, 0)
		dst = binary.BigEndian.AppendUint32(dst, uint32(k))
		n -= k
	}
	return dst
}
