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
		bp := getChunk(bigChunkBytes)
		out = append(out, bp)
		if len(*bp) != bigChunkBytes {
			t.Fatalf("buffer %d: %d bytes, want a big one within the budget", i, len(*bp))
		}
	}
	over := getChunk(bigChunkBytes)
	out = append(out, over)
	if len(*over) != smallChunkBytes {
		t.Fatalf("past the budget got %d bytes, want a small buffer", len(*over))
	}
	if small := getChunk(smallChunkBytes); len(*small) != smallChunkBytes {
		t.Fatalf("small buffer of %d bytes", len(*small))
	} else {
		putChunk(small)
	}
	putChunk(out[0])
	out = out[1:]
	again := getChunk(bigChunkBytes)
	out = append(out, again)
	if len(*again) != bigChunkBytes {
		t.Fatalf("after one came back got %d bytes, want a big buffer", len(*again))
	}
}

// Ensure a read's buffer is of the smallest class that holds what it
// asks for, so that an event filling its read keeps the buffer (keep).
func TestChunkClasses(t *testing.T) {
	if minGrantBytes<<(chunkClasses-1) != bigChunkBytes {
		t.Fatalf("classes end at %d bytes, not bigChunkBytes", minGrantBytes<<(chunkClasses-1))
	}
	for _, tt := range []struct{ ask, want int }{
		{1, 4 << 10}, {4 << 10, 4 << 10}, {4<<10 + 1, 8 << 10}, {48 << 10, 64 << 10},
		{64 << 10, 64 << 10}, {100 << 10, 128 << 10}, {128<<10 - eventOverheadBytes, 128 << 10},
		{256 << 10, 256 << 10}, {1 << 20, 256 << 10},
	} {
		bp := getChunk(tt.ask)
		if len(*bp) != tt.want {
			t.Errorf("getChunk(%d): %d bytes, want %d", tt.ask, len(*bp), tt.want)
		}
		putChunk(bp)
	}
	if n := bigOut.Load(); n != 0 {
		t.Errorf("%d big buffers counted out after all were returned", n)
	}
}

// Ensure a streaming pump reads on, into small buffers, while the big
// buffers' budget is spent (it once sliced a small buffer past its end).
func TestRelayBigBudgetSpent(t *testing.T) {
	var out []*[]byte
	for range bigChunksOut {
		out = append(out, getChunk(bigChunkBytes))
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
