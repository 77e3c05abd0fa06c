package main

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// Ensure jobs, asked right after a job was killed for its output, shows
// that job's final counters, never the zeros of a record not yet ended.
func TestJobsRightAfterOutputLimit(t *testing.T) {
	requireSandboxHere(t)
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), "data_dir = \"data\"\n[[app]]\nname = \"flood\"\ncommand = [\"yes\"]\npolicy = \"strict\"\n")
	srv := startServer(t, dir, "--config", cfg)
	for i := range 3 {
		_, stderr, code := runCLI(t, dir, nil, "connect", srv.url("ws", "/apps/flood"))
		if code != 128+15 {
			t.Fatalf("connect %d: exit %d, want 143 (TERM for max_output)\n%s", i, code, stderr)
		}
		out, stderr, code := runCLI(t, dir, nil, "jobs", "--json", "--all", "--config", cfg, "--admin", srv.admin)
		if code != 0 {
			t.Fatalf("jobs: exit %d\n%s", code, stderr)
		}
		var got struct {
			Jobs []struct {
				ID, State, Reason string
				Usage             struct {
					CPUUserNs       int64 `json:"cpu_user_ns"`
					CPUSystemNs     int64 `json:"cpu_system_ns"`
					MemoryPeakBytes int64 `json:"memory_peak_bytes"`
				}
			}
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Jobs) != i+1 {
			t.Fatalf("jobs --json: %v, %d jobs\n%s", err, len(got.Jobs), out)
		}
		j := got.Jobs[0] // newest first
		if j.State != "finished" || j.Reason != "output-limit" || j.Usage.CPUUserNs+j.Usage.CPUSystemNs == 0 || j.Usage.MemoryPeakBytes <= 0 {
			t.Fatalf("%s right after its end: %+v; want finished, output-limit, its CPU and memory peak", j.ID, j)
		}
	}
}
