package supervisor

import (
	"strconv"
	"testing"
	"time"
)

// Ensure that a job's final record counts the stdin it read, even when the
// program reads it, exits and is reaped before the goroutine that wrote it
// runs again (TestLedgerCommands_RunningAndStopped once recorded a demo job
// with stdin_bytes 0; a stress of thousands of jobs hit it about once in
// 1,500). Not parallel: it sets the stdin write hook.
func TestStdin_CountedInFinalRecord(t *testing.T) {
	// Set before the supervisor is made, and cleared after its shutdown.
	testStdinWritten = func() { time.Sleep(300 * time.Millisecond) } // the writer is descheduled
	t.Cleanup(func() { testStdinWritten = nil })
	s := batchSup(t, t.TempDir(), App{Name: "b", Path: "/bin/sh", Args: []string{"sh", "-c", `read line; echo "got $line"`}, Mode: "batch"})
	j, b := startBatch(t, s, "b")
	if _, err := b.Write([]byte("bye\n")); err != nil {
		t.Fatal(err)
	}
	rec := waitFinished(t, s, j.ID)
	if rec.Traffic.StdinBytes != 4 || rec.Traffic.StdoutBytes != 8 || rec.ExitCode == nil || *rec.ExitCode != 0 {
		t.Fatalf("record %+v, exit %v: want stdin 4 bytes, stdout 8, exit 0", rec.Traffic, fmtCode(rec.ExitCode))
	}
}

// fmtCode is a record's exit code for a message.
func fmtCode(c *int) string {
	if c == nil {
		return "none"
	}
	return strconv.Itoa(*c)
}
