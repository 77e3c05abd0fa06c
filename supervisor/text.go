package supervisor

import "unicode/utf8"

// IncompleteUTF8Tail is how many trailing bytes of b start a UTF-8 sequence
// that b does not finish (0 to 3). Streams hold them back for the next
// chunk, so text split by a read is still sent as text: the server's
// output protocols and the CLI's stdin pump both rely on this one rule.
func IncompleteUTF8Tail(b []byte) int {
	for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return i
			}
			return 0
		}
	}
	return 0
}
