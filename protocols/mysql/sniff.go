package mysql

// Bounds of what Sniff accepts as a greeting.
const (
	minGreeting    = 20   // protocol, a short version, connection id, scramble, flags
	maxGreeting    = 1024 // MySQL 8 and MariaDB 11 send about 80 to 110 bytes
	maxVersionText = 64
)

// Sniff reports whether a server's first bytes look like a MySQL or
// MariaDB greeting: a packet with sequence id 0 and a plausible length
// whose payload starts with protocol version 10 and a printable server
// version that begins with a digit ("8.0.36", "5.5.5-10.11.19-MariaDB")
// and ends in a NUL. It allocates nothing. Every other protocol's first
// bytes fail the fixed byte after the length and sequence id.
func Sniff(first []byte) bool {
	if len(first) < headerLen+3 {
		return false
	}
	l, seq := header(first)
	if seq != 0 || l < minGreeting || l > maxGreeting {
		return false
	}
	b := first[headerLen:]
	if b[0] != 10 || !('0' <= b[1] && b[1] <= '9') {
		return false
	}
	for i := 2; i < len(b) && i <= 1+maxVersionText && i < l; i++ {
		switch c := b[i]; {
		case c == 0:
			return true
		case c < ' ' || c > '~':
			return false
		}
	}
	return false
}
