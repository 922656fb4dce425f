package bulkheadv1

// MaxDstName bounds Flow.dst_name in bytes (RFC 1035: 253 in text form).
const MaxDstName = 253

// maxLabel bounds one label of Flow.dst_name (RFC 1035).
const maxLabel = 63

// ValidDstName reports whether s may be a Flow's dst_name: a DNS name in
// lower case without a final dot, at most MaxDstName bytes, of labels of
// 1 to 63 letters, digits, '-' and '_' that neither begin nor end with '-'
// (the host names an FQDN peer of a SegmentPolicy accepts, wildcards
// aside). The empty string is not a name. Both planes use it: the proxy
// reports no other name and the control plane refuses a flow carrying
// one. It takes a string or a byte slice and allocates nothing.
func ValidDstName[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 || len(s) > MaxDstName {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
			continue
		}
		n := i - start
		if n == 0 || n > maxLabel || s[start] == '-' || s[i-1] == '-' {
			return false
		}
		start = i + 1
	}
	return true
}
