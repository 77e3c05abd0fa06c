package tomlstrict

import (
	"testing"
	"time"
)

// Ensure that durations take Go units and whole days, and refuse the rest.
func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90d", 90 * 24 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"250ms", 250 * time.Millisecond, true},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"-1d", 0, false},
		{"106751d", 106751 * 24 * time.Hour, true},
		{"106752d", 0, false}, // would wrap past the largest duration
		{"300000d", 0, false},
		{"-200000d", 0, false}, // a negative count that overflows to positive
		{"+5d", 5 * 24 * time.Hour, true},
		{"5 minutes", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDuration(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseDuration(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}
