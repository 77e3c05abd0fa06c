package accounting

import (
	"errors"
	"strings"
	"testing"
)

// Ensure that a report's CSV has a fixed header, one row per group in the
// given order, fixed number formats, and quotes only what needs it.
func TestWriteReportCSV(t *testing.T) {
	tests := []struct {
		name   string
		by     string
		groups []Group
		want   string
	}{
		{"no groups", "tenant", nil,
			"tenant,jobs,cpu_seconds,memory_peak_bytes,gib_hours,bytes,reasons,cost\n"},
		{"groups in order", "app", []Group{
			{Key: "echo", Jobs: 3, CPUSeconds: 1.23456, MemoryPeakBytes: 4096, GiBHours: 0.0000123, Bytes: 99,
				Reasons: map[string]int{"oom": 1, "exit": 2}, Cost: 0.5},
			{Key: "", Jobs: 1, MemoryPeakBytes: -1, Reasons: map[string]int{}},
		}, "app,jobs,cpu_seconds,memory_peak_bytes,gib_hours,bytes,reasons,cost\n" +
			"echo,3,1.235,4096,0.000012,99,exit=2;oom=1,0.5000\n" +
			",1,0.000,-1,0.000000,0,,0.0000\n"},
		{"a key that needs quoting", "tenant", []Group{{Key: `a,"b"`, Jobs: 1}},
			"tenant,jobs,cpu_seconds,memory_peak_bytes,gib_hours,bytes,reasons,cost\n" +
				`"a,""b""",1,0.000,0,0.000000,0,,0.0000` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := WriteReportCSV(&b, tt.by, tt.groups); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errBroken }

var errBroken = errors.New("broken pipe")

// Ensure that a failed write is returned, wrapped, not swallowed.
func TestWriteReportCSV_WriteFails(t *testing.T) {
	err := WriteReportCSV(failingWriter{}, "tenant", []Group{{Key: "t"}})
	if !errors.Is(err, errBroken) {
		t.Fatalf("err = %v, want %v", err, errBroken)
	}
}

// Ensure that reasons read the same whatever the map's order.
func TestFormatReasons(t *testing.T) {
	tests := []struct {
		name string
		m    map[string]int
		sep  string
		want string
	}{
		{"nil", nil, ";", ""},
		{"empty", map[string]int{}, " ", ""},
		{"one", map[string]int{"exit": 4}, ";", "exit=4"},
		{"sorted", map[string]int{"oom": 1, "cancelled": 3, "exit": 2}, ";", "cancelled=3;exit=2;oom=1"},
		{"space", map[string]int{"running": 1, "exit": 2}, " ", "exit=2 running=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatReasons(tt.m, tt.sep); got != tt.want {
				t.Errorf("FormatReasons(%v, %q) = %q, want %q", tt.m, tt.sep, got, tt.want)
			}
		})
	}
}

// Ensure that sizes switch units at each binary boundary, and that the
// "unknown" -1 shows as a dash.
func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{-1, "-"},
		{0, "0B"},
		{1023, "1023B"},
		{1024, "1.0K"},
		{1536, "1.5K"},
		{1<<20 - 1, "1024.0K"},
		{1 << 20, "1.0M"},
		{1<<30 - 1, "1024.0M"},
		{1 << 30, "1.00G"},
		{5 << 40, "5120.00G"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := FormatBytes(tt.n); got != tt.want {
				t.Errorf("FormatBytes(%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}
