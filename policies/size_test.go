package policies

import (
	"math"
	"testing"
)

// Ensure sizes parse in every accepted form, and bad ones are refused with
// a message that quotes them.
func TestParseSize(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr string
	}{
		{name: "MiB", in: "256MiB", want: 268435456},
		{name: "MB is decimal", in: "64MB", want: 64000000},
		{name: "GiB", in: "1GiB", want: 1 << 30},
		{name: "KiB", in: "512KiB", want: 512 << 10},
		{name: "kB and KB", in: "2kB", want: 2000},
		{name: "KB", in: "2KB", want: 2000},
		{name: "bytes with B", in: "100B", want: 100},
		{name: "plain bytes", in: "4096", want: 4096},
		{name: "space before the unit", in: "8 MiB", want: 8 << 20},
		{name: "fraction of whole bytes", in: "1.5GiB", want: 3 << 29},
		{name: "zero", in: "0", want: 0},
		{name: "largest", in: "9223372036854775807", want: math.MaxInt64},
		{name: "unknown unit", in: "10XB", wantErr: `bad size "10XB": unknown unit "XB" (use B, kB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB or EiB)`},
		{name: "lower-case unit", in: "10mib", wantErr: `bad size "10mib": unknown unit "mib" (use B, kB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB or EiB)`},
		{name: "no number", in: "MiB", wantErr: `bad size "MiB": use a number with a unit, like "256MiB" or "64MB", or a number of bytes`},
		{name: "empty", in: "", wantErr: `bad size "": use a number with a unit, like "256MiB" or "64MB", or a number of bytes`},
		{name: "negative", in: "-1MiB", wantErr: `size "-1MiB" must not be negative`},
		{name: "part of a byte", in: "0.1KiB", wantErr: `size "0.1KiB" is not a whole number of bytes`},
		{name: "overflow by unit", in: "8EiB", wantErr: `size "8EiB" is too large: at most 9223372036854775807 bytes (8EiB less one byte)`},
		{name: "overflow in bytes", in: "9223372036854775808", wantErr: `size "9223372036854775808" is too large: at most 9223372036854775807 bytes (8EiB less one byte)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("ParseSize(%q) = %d, %v; want error %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

// Ensure Size takes TOML integers and strings, and nothing else.
func TestSize_UnmarshalTOML(t *testing.T) {
	tests := []struct {
		name    string
		in      any
		want    Size
		wantErr string
	}{
		{name: "integer", in: int64(1024), want: 1024},
		{name: "string", in: "1KiB", want: 1024},
		{name: "negative integer", in: int64(-1), wantErr: "size -1 must not be negative"},
		{name: "float", in: 1.5, wantErr: `must be a size like "256MiB" or a number of bytes, not a float`},
		{name: "bool", in: true, wantErr: `must be a size like "256MiB" or a number of bytes, not a boolean`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Size
			err := s.UnmarshalTOML(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("UnmarshalTOML(%v): %v, want error %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || s != tc.want {
				t.Fatalf("UnmarshalTOML(%v) = %d, %v; want %d", tc.in, s, err, tc.want)
			}
		})
	}
}

// Ensure FormatSize picks the largest exact unit and ParseSize reads it back.
func TestFormatSize(t *testing.T) {
	tests := []struct {
		name string
		in   int64
		want string
	}{
		{name: "zero", in: 0, want: "0B"},
		{name: "MiB", in: 256 << 20, want: "256MiB"},
		{name: "GiB", in: 1 << 30, want: "1GiB"},
		{name: "MB", in: 64000000, want: "64MB"},
		{name: "kB", in: 2000, want: "2kB"},
		{name: "odd bytes", in: 1000001, want: "1000001B"},
		{name: "largest", in: math.MaxInt64, want: "9223372036854775807B"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FormatSize(tc.in)
			if got != tc.want {
				t.Fatalf("FormatSize(%d) = %q, want %q", tc.in, got, tc.want)
			}
			back, err := ParseSize(got)
			if err != nil || back != tc.in {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", got, back, err, tc.in)
			}
		})
	}
}
