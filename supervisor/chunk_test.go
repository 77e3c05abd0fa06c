package supervisor

import (
	"bytes"
	"testing"
	"time"
)

// Ensure big output buffers stay within their server-wide budget: past it a
// streaming job reads small chunks, and every buffer returned frees budget.
func TestChunkBudget(t *testing.T) {
	if n := bigOut.Load(); n != 0 {
		t.Fatalf("%d big buffers out before the test", n)
	}
	var out []*[]byte
	t.Cleanup(func() {
		for _, bp := range out {
			putChunk(bp)
		}
		if n := bigOut.Load(); n != 0 {
			t.Errorf("%d big buffers still counted out after all were returned", n)
		}
	})
	for i := range bigChunksOut {
		bp := getChunk(true)
		out = append(out, bp)
		if len(*bp) != bigChunkBytes {
			t.Fatalf("buffer %d: %d bytes, want a big one within the budget", i, len(*bp))
		}
	}
	over := getChunk(true)
	out = append(out, over)
	if len(*over) != smallChunkBytes {
		t.Fatalf("past the budget got %d bytes, want a small buffer", len(*over))
	}
	if small := getChunk(false); len(*small) != smallChunkBytes {
		t.Fatalf("small buffer of %d bytes", len(*small))
	} else {
		putChunk(small)
	}
	putChunk(out[0])
	out = out[1:]
	again := getChunk(true)
	out = append(out, again)
	if len(*again) != bigChunkBytes {
		t.Fatalf("after one came back got %d bytes, want a big buffer", len(*again))
	}
}

// Ensure a streaming pump reads on, into small buffers, while the big
// buffers' budget is spent (it once sliced a small buffer past its end).
func TestRelayBigBudgetSpent(t *testing.T) {
	var out []*[]byte
	for range bigChunksOut {
		out = append(out, getChunk(true))
	}
	t.Cleanup(func() {
		for _, bp := range out {
			putChunk(bp)
		}
	})
	rg := newRelayRig(t, true, 0, DefaultReplayBytes, false)
	rg.r.start()
	big := noise(1, 3<<20)
	rg.writeInPieces(t, Stdout, big, 300<<10)
	rg.exit(time.Minute)
	rg.r.wait()
	<-rg.rd.done
	if got := rg.rd.received(Stdout); !bytes.Equal(got, big) {
		t.Errorf("stdout: got %d bytes, want the %d written, in order", len(got), len(big))
	}
}
