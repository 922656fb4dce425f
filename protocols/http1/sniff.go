package http1

import "bytes"

// sniffLongLine is how much of a request line Sniff wants to see when its
// end is not among the first bytes.
const sniffLongLine = 1024

// Sniff reports whether a client's first bytes look like an HTTP/1.x
// request: a request line "METHOD SP target SP HTTP/1.0|1.1 CRLF" whose
// method is GET, POST, PUT, DELETE, HEAD, OPTIONS, PATCH, CONNECT or TRACE
// in upper case, whose target starts as its form requires ("/", "*" for
// OPTIONS, "http://" or "https://", an authority for CONNECT) and holds
// only printable ASCII. The whole line must be there, unless its first
// 1 KiB is (a long target). It allocates nothing.
//
// It is conservative: a Redis inline command ("GET key"), memcached's
// lower-case commands, TLS, binary protocols and the HTTP/2 preface ("PRI *
// HTTP/2.0") are refused.
func Sniff(first []byte) bool {
	sp := bytes.IndexByte(first[:min(len(first), len("OPTIONS")+1)], ' ')
	if sp < 0 {
		return false
	}
	method := first[:sp]
	switch string(method) {
	case "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE":
	default:
		return false
	}
	rest := first[sp+1:]
	if len(rest) == 0 {
		return false
	}
	switch {
	case string(method) == "CONNECT":
		if !isHostChar(rest[0]) && rest[0] != '[' {
			return false
		}
	case rest[0] == '/':
	case rest[0] == '*':
		if string(method) != "OPTIONS" {
			return false
		}
	case bytes.HasPrefix(rest, []byte("http://")), bytes.HasPrefix(rest, []byte("https://")):
	default:
		return false
	}
	end := bytes.IndexByte(rest, '\n')
	if end < 0 {
		if len(rest) < sniffLongLine || bytes.IndexByte(rest, ' ') >= 0 {
			return false
		}
		return allPrintable(rest)
	}
	line := rest[:end]
	const v = len(" HTTP/1.1\r")
	if len(line) < v+1 {
		return false
	}
	tail := line[len(line)-v:]
	if string(tail) != " HTTP/1.1\r" && string(tail) != " HTTP/1.0\r" {
		return false
	}
	target := line[:len(line)-v]
	return bytes.IndexByte(target, ' ') < 0 && allPrintable(target)
}

func allPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}
