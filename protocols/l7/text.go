package l7

// Deny replies echo names and reasons that come from the network or from
// configuration; these helpers keep only printable ASCII so that no control
// byte, NUL or line break can end a field early or reach a terminal. They do
// not allocate when dst has capacity.

// HasPrintable reports whether s holds a printable ASCII byte other than a
// space, i.e. whether AppendPrintable would append anything worth showing.
func HasPrintable[S ~string | ~[]byte](s S) bool {
	for i := 0; i < len(s); i++ {
		if s[i] > ' ' && s[i] < 0x7f {
			return true
		}
	}
	return false
}

// AppendPrintable appends the printable ASCII bytes (space to '~') of s to
// dst, at most max of them, dropping every other byte.
func AppendPrintable[S ~string | ~[]byte](dst []byte, s S, max int) []byte {
	n := 0
	for i := 0; i < len(s) && n < max; i++ {
		if c := s[i]; c >= ' ' && c < 0x7f {
			dst = append(dst, c)
			n++
		}
	}
	return dst
}

// PrintableLen is the number of bytes AppendPrintable(dst, s, max) appends.
func PrintableLen[S ~string | ~[]byte](s S, max int) int {
	n := 0
	for i := 0; i < len(s) && n < max; i++ {
		if s[i] >= ' ' && s[i] < 0x7f {
			n++
		}
	}
	return n
}
