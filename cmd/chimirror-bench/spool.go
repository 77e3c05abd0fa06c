package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/chimirror/chimirror/supervisor/spool"
)

// benchSpoolPolicy makes policy bench-spool of the bench policy: its jobs
// spool, bounded well above the binary figure's bytes.
const benchSpoolPolicy = `spool = true
max_output = "64GiB"
`

// benchSpoolApp is zero's twin under bench-spool.
const benchSpoolApp = `
[[app]]
name = "zero-spooled"
command = ["head", "-c", "%d", "/dev/zero"]
binary = true
policy = "bench-spool"
`

// spoolChunkBytes is what the spool figure appends at a time: the relay's
// big read.
const spoolChunkBytes = 256 << 10

// spoolRows measures the spool's figures: its own write against dd of the
// same bytes to a plain file (both synced at the end), and a spooled job's
// output to its client against the same job unspooled, in turns.
func spoolRows(srv *benchServer, o benchOpts, add func(benchRow)) error {
	n := o.zeroBytes / spoolChunkBytes * spoolChunkBytes
	ours, floor, err := spoolWrite(n)
	if err != nil {
		return fmt.Errorf("spool write: %w", err)
	}
	add(benchRow{"spool write (256 KiB events, fsync at close)", fmt.Sprintf("%.0f MB/s (%.2f× floor)", ours/1e6, ours/floor),
		fmt.Sprintf("%.0f MB/s dd bs=256K conv=fsync of the same bytes to a plain file", floor/1e6), "≥ 0.8× floor"})
	var spooled, plain outRun
	for range 3 { // in turns, best of three each: the machine is shared
		p, err := srv.measuredOut("zero", o.zeroBytes)
		if err != nil {
			return fmt.Errorf("binary output: %w", err)
		}
		s, err := srv.measuredOut("zero-spooled", o.zeroBytes)
		if err != nil {
			return fmt.Errorf("spooled binary output: %w", err)
		}
		plain, spooled = plain.best(p), spooled.best(s)
	}
	add(benchRow{"spooled job's binary output to its client",
		fmt.Sprintf("%.0f MB/s (%.2f× floor), server CPU %s per GiB", spooled.rate/1e6, spooled.rate/plain.rate, spooled.cpuPerGiB()),
		fmt.Sprintf("%.0f MB/s the same job unspooled, server CPU %s per GiB; best of three each, in turns", plain.rate/1e6, plain.cpuPerGiB()), "≥ 0.8× floor"})
	return nil
}

// outRun is one run of a job's output to its client: bytes per second,
// and the server's CPU time per byte over it.
type outRun struct {
	rate       float64
	cpuPerByte float64 // seconds; 0: unknown
}

// best is the faster of r and o.
func (r outRun) best(o outRun) outRun {
	if o.rate > r.rate {
		return o
	}
	return r
}

func (r outRun) cpuPerGiB() string {
	if r.cpuPerByte == 0 {
		return "?"
	}
	return fmt.Sprintf("%.2f s", r.cpuPerByte*(1<<30))
}

// measuredOut is binaryOutOf of app with the server's CPU time over it.
func (s *benchServer) measuredOut(app string, n int) (outRun, error) {
	c0, err0 := processCPU(s.cmd.Process.Pid)
	rate, err := s.binaryOutOf(app, n)
	if err != nil {
		return outRun{}, err
	}
	c1, err1 := processCPU(s.cmd.Process.Pid)
	if err0 != nil || err1 != nil {
		return outRun{rate: rate}, nil
	}
	return outRun{rate: rate, cpuPerByte: (c1 - c0).Seconds() / float64(n)}, nil
}

// spoolWrite returns bytes per second of a spool of n bytes, and of dd.
func spoolWrite(n int) (ours, floor float64, retErr error) {
	dir, err := os.MkdirTemp("", "chimirror-bench-spool-")
	if err != nil {
		return 0, 0, err
	}
	defer func() { retErr = errors.Join(retErr, os.RemoveAll(dir)) }()
	chunk := make([]byte, spoolChunkBytes)
	start := time.Now()
	w, err := spool.Create(dir, "JOB00000001")
	if err != nil {
		return 0, 0, err
	}
	seq := uint64(0)
	for i := 0; i < n; i += len(chunk) {
		seq++
		if err := w.Append(spool.KindStdout, seq, chunk); err != nil {
			return 0, 0, errors.Join(err, w.Close(0, nil))
		}
	}
	if err := w.Close(seq+1, &spool.Exit{Reason: "exit"}); err != nil {
		return 0, 0, err
	}
	ours = float64(n) / time.Since(start).Seconds()
	start = time.Now()
	dd := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(dir, "dd.out"), "bs=256K", "count="+strconv.Itoa(n/spoolChunkBytes), "conv=fsync")
	if out, err := dd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("dd: %w: %s", err, out)
	}
	floor = float64(n) / time.Since(start).Seconds()
	return ours, floor, nil
}

// binaryOutOf is binaryOut of app: its stdout bytes per second.
func (s *benchServer) binaryOutOf(app string, n int) (float64, error) {
	_, total, d, err := s.drain(app)
	if err != nil {
		return 0, err
	}
	if total != int64(n) {
		return 0, fmt.Errorf("%s: got %d bytes, want %d", app, total, n)
	}
	return float64(total) / d.Seconds(), nil
}
