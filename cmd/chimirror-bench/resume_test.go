package main

import (
	"testing"
)

// Ensure rings count as full when each job's is all but the slack, or when
// together they hold replay_memory_max but the slack, and not before every
// job runs.
func TestRingsFull(t *testing.T) {
	const ring, memMax = 256 << 10, 1 << 20
	jobs := func(stdout ...int64) []liveJob {
		var out []liveJob
		for i, s := range stdout {
			out = append(out, liveJob{pid: i + 1, stdout: s})
		}
		return out
	}
	tests := []struct {
		name string
		jobs []liveJob
		n    int
		want bool
	}{
		{name: "each full", jobs: jobs(ring, ring-ringSlack), n: 2, want: true},
		{name: "one short", jobs: jobs(ring, ring-ringSlack-1), n: 2, want: false},
		{name: "not every job running yet", jobs: jobs(ring), n: 2, want: false},
		{name: "replay_memory_max spent", jobs: jobs(ring, ring, ring, ring-ringSlack, 0), n: 5, want: true},
		{name: "replay_memory_max not yet spent", jobs: jobs(ring, ring, ring, 0, 0), n: 5, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ringsFull(tt.jobs, tt.n, ring, memMax); got != tt.want {
				t.Fatalf("ringsFull = %v, want %v", got, tt.want)
			}
		})
	}
}

// Ensure a zombie or dead process counts as gone, whatever its command is
// called, and a sleeping one does not.
func TestIsZombie(t *testing.T) {
	tests := []struct {
		stat string
		want bool
	}{
		{"42 (head) S 1 42 42 0", false},
		{"42 (head) Z 1 42 42 0", true},
		{"42 (a) Z (b)) S 1 42", false},
		{"42 (a) S (b)) Z 1 42", true},
		{"42 (x) X 1", true},
	}
	for _, tt := range tests {
		if got := isZombie([]byte(tt.stat)); got != tt.want {
			t.Errorf("isZombie(%q) = %v, want %v", tt.stat, got, tt.want)
		}
	}
}
