package http2

// Sniff reports whether a client's first bytes are the HTTP/2 client
// connection preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24 bytes, which
// clients send in one write): h2c with prior knowledge; or a whole
// HTTP/1.1 request head (one http1.Sniff accepts) with an "Upgrade: h2c"
// header: an h2c upgrade (one whose head is not among the first bytes is
// left to http1, which passes the connection after the 101). It
// allocates nothing and never matches another protocol's opening (the
// preface is not a valid HTTP/1.x request line, RESP command, TLS record
// or database handshake; HTTP/1.1 without the upgrade stays http1's).
func Sniff(first []byte) bool {
	if len(first) >= len(preface) && string(first[:len(preface)]) == preface {
		return true
	}
	return sniffUpgrade(first)
}
