package supervisor

import "testing"

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
