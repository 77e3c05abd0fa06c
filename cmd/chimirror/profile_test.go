package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Ensure that CHIMIRROR_MEMPROFILE and CHIMIRROR_CPUPROFILE together give
// both profiles, each a gzipped pprof file, written by the stop function.
func TestStartProfile_CPUAndAllocations(t *testing.T) {
	rate := runtime.MemProfileRate
	t.Cleanup(func() { runtime.MemProfileRate = rate })
	dir := t.TempDir()
	cpu, mem := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "mem.prof")
	t.Setenv("CHIMIRROR_CPUPROFILE", cpu)
	t.Setenv("CHIMIRROR_MEMPROFILE", mem)
	stop, err := startProfile()
	if err != nil {
		t.Fatal(err)
	}
	if runtime.MemProfileRate != memProfileRate {
		t.Errorf("MemProfileRate = %d, want %d", runtime.MemProfileRate, memProfileRate)
	}
	if _, err := os.Stat(mem); !os.IsNotExist(err) {
		t.Errorf("allocation profile before stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cpu, mem} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) { // pprof files are gzipped
			t.Errorf("%s: not a gzipped profile (%d bytes)", filepath.Base(p), len(b))
		}
	}
}
