package web

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// appendJSONStringRef is appendJSONString one byte at a time, as it was
// before it took eight at once: the reference the fast path must match.
func appendJSONStringRef(dst, b []byte) []byte {
	dst = append(dst, '"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// Ensure the eight-bytes-at-once JSON string encoder escapes exactly what
// the byte loop does, wherever the bytes to escape fall (every byte value,
// at every offset of a word, in runs and alone), and that its output
// decodes back to the input.
func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"plain word", "abcdefgh"},
		{"plain, odd length", "the quick brown fox jumps"},
		{"newline last in a word", "abcdefg\n"},
		{"quote first in a word", "\"bcdefgh12345678"},
		{"backslash at the tail", "abcdefgh\\"},
		{"control bytes", "\x00\x01\x1f\x7f\x20"},
		{"UTF-8", "grüße, 世界 ✓ — naïve"},
		{"a line", "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := appendJSONString(nil, []byte(tc.in))
			if want := appendJSONStringRef(nil, []byte(tc.in)); !bytes.Equal(got, want) {
				t.Fatalf("got %s, want %s", got, want)
			}
			var back string
			if err := json.Unmarshal(got, &back); err != nil || back != tc.in {
				t.Fatalf("%s decodes to %q (%v), want %q", got, back, err, tc.in)
			}
		})
	}
	t.Run("every byte at every offset", func(t *testing.T) {
		for c := range 256 {
			for off := range 17 {
				b := bytes.Repeat([]byte{'a'}, 24)
				b[off] = byte(c)
				if got, want := appendJSONString(nil, b), appendJSONStringRef(nil, b); !bytes.Equal(got, want) {
					t.Fatalf("byte %#x at %d: got %s, want %s", c, off, got, want)
				}
			}
		}
	})
	t.Run("random", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 8))
		for range 2000 {
			b := make([]byte, rng.IntN(70))
			for i := range b {
				b[i] = byte(rng.IntN(256))
				if rng.IntN(4) > 0 {
					b[i] = 'a' + byte(rng.IntN(26))
				}
			}
			if got, want := appendJSONString(nil, b), appendJSONStringRef(nil, b); !bytes.Equal(got, want) {
				t.Fatalf("%q: got %s, want %s", b, got, want)
			}
		}
	})
}

func BenchmarkAppendJSONString(b *testing.B) {
	line := bytes.Repeat([]byte("000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\n"), 40)
	b.SetBytes(int64(len(line)))
	var dst []byte
	for b.Loop() {
		dst = appendJSONString(dst[:0], line)
	}
}
