package memcached

// Sniff reports whether a client's first bytes look like memcached. It
// allocates nothing.
//
// Text and meta: a memcached command name, lower case as memcached wants
// it, followed by a space, or by CR or LF for the commands that take no
// argument (version, stats, mn…); an HTTP request line is refused. Names
// that Redis shares (get, set, incr…) are memcached's only in lower case:
// the Redis sniffer leaves them to this one.
//
// Binary: a whole 24-byte request header with the request magic 0x80, an
// opcode memcached implements, data type 0 and lengths that opcode takes.
// Fewer than 24 bytes are not enough to tell.
func Sniff(first []byte) bool {
	if len(first) == 0 {
		return false
	}
	if first[0] == magicRequest {
		return sniffBinary(first)
	}
	end := 0
	for end < len(first) && end <= maxSniffWord && first[end] != ' ' && first[end] != '\r' && first[end] != '\n' {
		end++
	}
	if end == 0 || end == len(first) || end > maxSniffWord {
		return false // no name, or no separator after it yet
	}
	args, ok := sniffCommand(first[:end])
	if !ok {
		return false
	}
	sep := first[end]
	if sep != ' ' && args {
		return false
	}
	if sep == '\r' && (end+1 >= len(first) || first[end+1] != '\n') {
		return false
	}
	return !httpRequestLine(first)
}

// maxSniffWord is the longest command name Sniff knows (cache_memlimit).
const maxSniffWord = len("cache_memlimit")

// sniffCommand reports whether name is a memcached command (ok) and
// whether it needs arguments (args).
func sniffCommand(name []byte) (args, ok bool) {
	switch string(name) {
	case "get", "gets", "gat", "gats", "set", "add", "replace", "append", "prepend", "cas",
		"delete", "incr", "decr", "touch", "verbosity", "cache_memlimit", "lru_crawler", "slabs",
		"lru", "mg", "ms", "md", "ma", "me":
		return true, true
	case "version", "stats", "flush_all", "quit", "shutdown", "watch", "mn", "misbehave":
		return false, true
	}
	return false, false
}

// sniffBinary checks a binary request header.
func sniffBinary(b []byte) bool {
	if len(b) < headerLen || !opcodes[b[1]].known || b[5] != 0 {
		return false
	}
	h := readHeader(b)
	_, err := checkRequest(&h, CapMaxItem)
	return err == nil
}

// httpRequestLine reports whether the first line of b ends in an HTTP
// version, as in "get /path HTTP/1.1".
func httpRequestLine(b []byte) bool {
	for i := 0; i+6 <= len(b) && b[i] != '\n'; i++ {
		if string(b[i:i+6]) == " HTTP/" {
			return true
		}
	}
	return false
}
