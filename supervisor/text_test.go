package supervisor

import "testing"

// Ensure that only a UTF-8 sequence the chunk does not finish is held
// back: not a finished one, not stray continuation bytes.
func TestIncompleteUTF8Tail(t *testing.T) {
	euro := "\u20ac"      // 3 bytes: e2 82 ac
	emoji := "\U0001F600" // 4 bytes
	tests := []struct {
		name string
		b    string
		want int
	}{
		{"empty", "", 0},
		{"ascii", "abc", 0},
		{"whole 3-byte rune", "a" + euro, 0},
		{"first of 3", "a" + euro[:1], 1},
		{"two of 3", "a" + euro[:2], 2},
		{"three of 4", emoji[:3], 3},
		{"whole 4-byte rune", emoji, 0},
		{"lone continuation byte", "a\x82", 0},
		{"four continuation bytes", "\x80\x80\x80\x80", 0},
		{"ascii after a split", euro[:2] + "a", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IncompleteUTF8Tail([]byte(tt.b)); got != tt.want {
				t.Errorf("IncompleteUTF8Tail(%q) = %d, want %d", tt.b, got, tt.want)
			}
		})
	}
}
