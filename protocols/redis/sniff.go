package redis

// maxSniffDigits bounds the digits of a multibulk count Sniff accepts.
const maxSniffDigits = 7

// Sniff reports whether a client's first bytes look like Redis: a multibulk
// request ("*<count>\r\n$<digit>") or an inline command whose name is one
// of the common Redis commands, in any case, followed by a space, tab, CR or
// LF. It allocates nothing.
//
// Two inline look-alikes are refused: an HTTP request line ("GET /
// HTTP/1.1"), and all-lower-case names that memcached's case-sensitive text
// protocol shares with Redis ("get k", "set k 0 0 1"): a port that carries
// such traffic to Redis should be declared. Real Redis clients send
// multibulk requests, which are never ambiguous.
func Sniff(first []byte) bool {
	if len(first) == 0 {
		return false
	}
	if first[0] == '*' {
		i := 1
		for i < len(first) && i <= maxSniffDigits && isDigit(first[i]) {
			i++
		}
		if i == 1 || first[1] == '0' {
			return false
		}
		return len(first) >= i+4 && first[i] == '\r' && first[i+1] == '\n' &&
			first[i+2] == '$' && isDigit(first[i+3])
	}
	end := 0
	for end < len(first) && end <= len("PSUBSCRIBE") && !isInlineEnd(first[end]) {
		end++
	}
	if end == 0 || end == len(first) || end > len("PSUBSCRIBE") {
		return false // no name, or no separator after it yet
	}
	word := first[:end]
	shared, ok := inlineCommand(word)
	if !ok {
		return false
	}
	if shared && isLower(word) {
		return false // memcached's text protocol
	}
	return !httpRequestLine(first)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isInlineEnd(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isLower(s []byte) bool {
	for _, c := range s {
		if 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// inlineCommand reports whether name is a common Redis command (ok) and
// whether memcached's text protocol has a command of that name (shared).
func inlineCommand(name []byte) (shared, ok bool) {
	var buf [16]byte
	if len(name) > len(buf) {
		return false, false
	}
	for i, c := range name {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:len(name)]) {
	case "GET", "SET", "APPEND", "INCR", "DECR", "TOUCH", "QUIT":
		return true, true
	case "PING", "AUTH", "HELLO", "INFO", "SELECT", "CLIENT", "CONFIG", "COMMAND",
		"ECHO", "DEL", "EXISTS", "KEYS", "SCAN", "TYPE", "TTL", "PTTL", "EXPIRE",
		"MGET", "MSET", "SETEX", "SETNX", "INCRBY", "DECRBY", "DBSIZE", "FLUSHDB",
		"FLUSHALL", "HGET", "HSET", "HGETALL", "HDEL", "LPUSH", "RPUSH", "LPOP",
		"RPOP", "LRANGE", "LLEN", "SADD", "SREM", "SMEMBERS", "ZADD", "ZRANGE",
		"ZSCORE", "PUBLISH", "SUBSCRIBE", "PSUBSCRIBE", "MULTI", "EXEC", "MONITOR",
		"EVAL", "EVALSHA", "XADD", "XREAD", "CLUSTER", "READONLY", "ROLE", "SLOWLOG":
		return false, true
	}
	return false, false
}

// httpRequestLine reports whether the first line of b ends in an HTTP
// version, as in "GET /path HTTP/1.1".
func httpRequestLine(b []byte) bool {
	for i := 0; i+6 <= len(b) && b[i] != '\n'; i++ {
		if string(b[i:i+6]) == " HTTP/" {
			return true
		}
	}
	return false
}
