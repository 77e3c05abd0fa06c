package sandbox

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

func TestIDRange_Last(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    IDRange
		want uint32
	}{
		{"one id", IDRange{First: 7, Count: 1}, 7},
		{"five ids", IDRange{First: 10, Count: 5}, 14},
		{"from zero", IDRange{First: 0, Count: 65536}, 65535},
		{"up to the top", IDRange{First: math.MaxUint32 - 1, Count: 2}, math.MaxUint32},
		{"dynamic default", DefaultDynamicIDs, 65519},
		{"user namespace default", DefaultUserNamespaceIDs, 1879048191},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.r.Last(); got != tc.want {
				t.Errorf("%+v.Last() = %d, want %d", tc.r, got, tc.want)
			}
		})
	}
}

func TestIDRange_Contains(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    IDRange
		id   uint32
		want bool
	}{
		{"first", IDRange{10, 5}, 10, true},
		{"middle", IDRange{10, 5}, 12, true},
		{"last", IDRange{10, 5}, 14, true},
		{"just below", IDRange{10, 5}, 9, false},
		{"just above", IDRange{10, 5}, 15, false},
		{"zero, outside", IDRange{10, 5}, 0, false},
		{"single id", IDRange{42, 1}, 42, true},
		{"single id, next", IDRange{42, 1}, 43, false},
		{"count 0, at First", IDRange{10, 0}, 10, false},
		{"count 0, below First", IDRange{10, 0}, 9, false},
		// First 0, Count 0: Last wraps to MaxUint32, so only the Count
		// check keeps this range empty.
		{"count 0 at 0, id 0", IDRange{0, 0}, 0, false},
		{"count 0 at 0, id max", IDRange{0, 0}, math.MaxUint32, false},
		{"count 0 at 0, id in between", IDRange{0, 0}, 1000, false},
		{"top of the id space", IDRange{math.MaxUint32 - 1, 2}, math.MaxUint32, true},
		{"dynamic default, first", DefaultDynamicIDs, 61184, true},
		{"dynamic default, last", DefaultDynamicIDs, 65519, true},
		{"dynamic default, nobody", DefaultDynamicIDs, 65534, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.r.Contains(tc.id); got != tc.want {
				t.Errorf("%+v.Contains(%d) = %v, want %v", tc.r, tc.id, got, tc.want)
			}
		})
	}
}

func TestIDRange_Overlaps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a, b IDRange
		want bool
	}{
		{"identical", IDRange{10, 5}, IDRange{10, 5}, true},
		{"adjacent above", IDRange{10, 5}, IDRange{15, 5}, false},
		{"adjacent below", IDRange{10, 5}, IDRange{5, 5}, false},
		{"one id at the top", IDRange{10, 5}, IDRange{14, 5}, true},
		{"one id at the bottom", IDRange{10, 5}, IDRange{6, 5}, true},
		{"inside", IDRange{10, 5}, IDRange{11, 2}, true},
		{"around", IDRange{10, 5}, IDRange{0, 100}, true},
		{"far apart", IDRange{10, 5}, IDRange{1000, 5}, false},
		{"single ids equal", IDRange{7, 1}, IDRange{7, 1}, true},
		{"single ids adjacent", IDRange{7, 1}, IDRange{8, 1}, false},
		{"empty inside other", IDRange{10, 5}, IDRange{12, 0}, false},
		{"empty at 0 against all", IDRange{0, 0}, IDRange{0, math.MaxUint32}, false},
		{"both empty, same First", IDRange{3, 0}, IDRange{3, 0}, false},
		{"defaults are apart", DefaultDynamicIDs, DefaultUserNamespaceIDs, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.a.Overlaps(tc.b); got != tc.want {
				t.Errorf("%+v.Overlaps(%+v) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
			if got := tc.b.Overlaps(tc.a); got != tc.want {
				t.Errorf("%+v.Overlaps(%+v) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
			}
		})
	}
}

func TestIDRange_String(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    IDRange
		want string
	}{
		{"five ids", IDRange{10, 5}, "10-14"},
		{"one id", IDRange{7, 1}, "7-7"},
		{"dynamic default", DefaultDynamicIDs, "61184-65519"},
		{"user namespace default", DefaultUserNamespaceIDs, "524288-1879048191"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.r.String(); got != tc.want {
				t.Errorf("%+v.String() = %q, want %q", tc.r, got, tc.want)
			}
		})
	}
}

// mustGet takes a block from p, failing the test if there is none.
func mustGet(t *testing.T, p *idPool) uint32 {
	t.Helper()
	id, err := p.get()
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	return id
}

func TestIDPool(t *testing.T) {
	t.Parallel()
	// Blocks of 10 in 100-134: three whole blocks (100, 110, 120); the
	// five ids 130-134 make no block.
	r := IDRange{First: 100, Count: 35}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, p *idPool)
	}{
		{"fresh blocks in order, then exhausted", func(t *testing.T, p *idPool) {
			for _, want := range []uint32{100, 110, 120} {
				if got := mustGet(t, p); got != want {
					t.Fatalf("get = %d, want %d", got, want)
				}
			}
			id, err := p.get()
			if err == nil {
				t.Fatalf("get from an exhausted pool = %d, want an error", id)
			}
		}},
		{"every block once before reuse", func(t *testing.T, p *idPool) {
			a := mustGet(t, p)
			p.put(a)
			// a is free, but two blocks were never used: they come first.
			if got := mustGet(t, p); got != 110 {
				t.Fatalf("get after put(%d) = %d, want the fresh 110", a, got)
			}
			if got := mustGet(t, p); got != 120 {
				t.Fatalf("get = %d, want the fresh 120", got)
			}
			if got := mustGet(t, p); got != a {
				t.Fatalf("get once all were used = %d, want the freed %d", got, a)
			}
		}},
		{"freed longest ago first", func(t *testing.T, p *idPool) {
			for range 3 {
				mustGet(t, p)
			}
			order := []uint32{120, 100, 110}
			for _, id := range order {
				p.put(id)
			}
			for _, want := range order {
				if got := mustGet(t, p); got != want {
					t.Fatalf("get = %d, want %d (freed order %v)", got, want, order)
				}
			}
			if _, err := p.get(); err == nil {
				t.Fatal("get after handing out every freed block succeeded")
			}
		}},
		{"FIFO across interleaved puts and gets", func(t *testing.T, p *idPool) {
			for range 3 {
				mustGet(t, p)
			}
			p.put(110)
			p.put(100)
			if got := mustGet(t, p); got != 110 {
				t.Fatalf("get = %d, want 110", got)
			}
			p.put(120)
			p.put(110)
			for _, want := range []uint32{100, 120, 110} {
				if got := mustGet(t, p); got != want {
					t.Fatalf("get = %d, want %d", got, want)
				}
			}
		}},
		{"exhaustion wraps ErrNoIDs and names the range", func(t *testing.T, p *idPool) {
			for range 3 {
				mustGet(t, p)
			}
			_, err := p.get()
			if !errors.Is(err, ErrNoIDs) {
				t.Fatalf("get from an exhausted pool: %v, want one wrapping ErrNoIDs", err)
			}
			for _, want := range []string{"test uid", r.String(), "3 jobs"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			// A freed block makes it usable again.
			p.put(110)
			if got := mustGet(t, p); got != 110 {
				t.Fatalf("get after put(110) = %d", got)
			}
		}},
		{"inUse", func(t *testing.T, p *idPool) {
			check := func(want int) {
				t.Helper()
				if got := p.inUse(); got != want {
					t.Fatalf("inUse = %d, want %d", got, want)
				}
			}
			check(0)
			a := mustGet(t, p)
			check(1)
			b := mustGet(t, p)
			check(2)
			p.put(a)
			check(1)
			c := mustGet(t, p) // fresh
			check(2)
			d := mustGet(t, p) // a again
			check(3)
			if _, err := p.get(); err == nil {
				t.Fatal("get succeeded with every block in use")
			}
			check(3)
			for _, id := range []uint32{b, c, d} {
				p.put(id)
			}
			check(0)
		}},
		{"put takes any id of the block", func(t *testing.T, p *idPool) {
			for range 3 {
				mustGet(t, p)
			}
			p.put(117) // inside the block at 110
			if got := mustGet(t, p); got != 110 {
				t.Fatalf("get after put(117) = %d, want the block's first id 110", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newIDPool("test uid", r, 10))
		})
	}
}

func TestIDPool_UserNamespaceBlocks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		r      IDRange
		blocks int // how many blocks get hands out before ErrNoIDs; -1: don't exhaust
	}{
		{"four blocks", IDRange{First: 1 << 20, Count: 4 * UserNamespaceBlock}, 4},
		{"a partial block is unused", IDRange{First: 1 << 20, Count: 3*UserNamespaceBlock + UserNamespaceBlock - 1}, 3},
		{"less than a block", IDRange{First: 1 << 20, Count: UserNamespaceBlock - 1}, 0},
		{"default range", DefaultUserNamespaceIDs, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newIDPool("user namespace", tc.r, UserNamespaceBlock)
			n := tc.blocks
			if n < 0 {
				n = 100
			}
			for k := range n {
				id := mustGet(t, p)
				if want := tc.r.First + uint32(k)*UserNamespaceBlock; id != want {
					t.Fatalf("block %d starts at %d, want %d", k, id, want)
				}
				// The whole block is inside the range.
				if last := id + UserNamespaceBlock - 1; !tc.r.Contains(id) || !tc.r.Contains(last) {
					t.Fatalf("block %d-%d is not inside %s", id, last, tc.r)
				}
			}
			if tc.blocks < 0 {
				return
			}
			if id, err := p.get(); !errors.Is(err, ErrNoIDs) {
				t.Fatalf("get after %d blocks = %d, %v; want ErrNoIDs", tc.blocks, id, err)
			}
		})
	}
}

// TestIDPool_Model drives a pool with random gets and puts and checks each
// get against a plain model of the promise: fresh blocks in order, then
// freed ones oldest first; and that the freed queue stays bounded.
func TestIDPool_Model(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		blocks uint32
		seed   uint64
	}{
		{"one block", 1, 1},
		{"two blocks", 2, 2},
		{"three blocks", 3, 3},
		{"ten blocks", 10, 4},
		{"ten blocks, other seed", 10, 5},
		{"fifty blocks", 50, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const block = 1000
			r := IDRange{First: 5000, Count: tc.blocks * block}
			p := newIDPool("model", r, block)
			rng := rand.New(rand.NewPCG(tc.seed, tc.seed))
			var (
				fresh uint32   // model: next never-used block
				queue []uint32 // model: freed blocks, oldest first
				held  []uint32 // ids handed out and not put back
			)
			maxLen := 0
			for i := range 20000 {
				if len(held) > 0 && rng.IntN(2) == 0 {
					j := rng.IntN(len(held))
					id := held[j]
					held = append(held[:j], held[j+1:]...)
					p.put(id)
					queue = append(queue, id)
				} else {
					id, err := p.get()
					var want uint32
					switch {
					case fresh < tc.blocks:
						want = r.First + fresh*block
						fresh++
					case len(queue) > 0:
						want, queue = queue[0], queue[1:]
					default:
						if !errors.Is(err, ErrNoIDs) {
							t.Fatalf("step %d: get with all %d blocks held = %d, %v; want ErrNoIDs", i, tc.blocks, id, err)
						}
						continue
					}
					if err != nil || id != want {
						t.Fatalf("step %d: get = %d, %v; want %d", i, id, err, want)
					}
					held = append(held, id)
				}
				if got := p.inUse(); got != len(held) {
					t.Fatalf("step %d: inUse = %d, want %d", i, got, len(held))
				}
				p.mu.Lock()
				n := len(p.freed)
				p.mu.Unlock()
				maxLen = max(maxLen, n)
				// put compacts the queue unless at most half of it is
				// spent, so it holds fewer than twice the freed blocks:
				// bounded by the range, whatever the order.
				if n > 2*int(tc.blocks) {
					t.Fatalf("step %d: len(freed) = %d with %d blocks", i, n, tc.blocks)
				}
			}
			t.Logf("max len(freed) = %d for %d blocks", maxLen, tc.blocks)
		})
	}
}

// TestIDPool_FreedBounded cycles a small pool many times in the two
// patterns a server sees: one job at a time, and a full pool turning over.
func TestIDPool_FreedBounded(t *testing.T) {
	t.Parallel()
	const blocks = 4
	for _, tc := range []struct {
		name string
		hold int // blocks held across the loop
	}{
		{"none held", 0},
		{"one held", 1},
		{"all but one held", blocks - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newIDPool("small", IDRange{First: 0, Count: blocks}, 1)
			var held []uint32
			for range tc.hold {
				held = append(held, mustGet(t, p))
			}
			var free []uint32
			for range blocks - tc.hold {
				free = append(free, mustGet(t, p))
			}
			for _, id := range free {
				p.put(id)
			}
			for i := range 10000 {
				id := mustGet(t, p)
				p.put(id)
				if i%7 == 0 && len(held) > 0 { // turn a held block over too
					h := held[0]
					held = append(held[1:], mustGet(t, p))
					p.put(h)
				}
				p.mu.Lock()
				n := len(p.freed)
				p.mu.Unlock()
				if n > blocks+1 {
					t.Fatalf("iteration %d: len(freed) = %d, want at most %d", i, n, blocks+1)
				}
				if got := p.inUse(); got != tc.hold {
					t.Fatalf("iteration %d: inUse = %d, want %d", i, got, tc.hold)
				}
			}
		})
	}
}

// TestIDPool_Concurrent: no block is handed out twice at once.
func TestIDPool_Concurrent(t *testing.T) {
	t.Parallel()
	p := newIDPool("concurrent", IDRange{First: 1000, Count: 8 * 16}, 16)
	var (
		mu   sync.Mutex
		held = map[uint32]bool{}
		wg   sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for range 2000 {
				id, err := p.get()
				if err != nil {
					if !errors.Is(err, ErrNoIDs) {
						t.Errorf("get: %v", err)
						return
					}
					continue
				}
				mu.Lock()
				if held[id] {
					t.Errorf("block %d handed out twice", id)
				}
				held[id] = true
				mu.Unlock()
				mu.Lock()
				delete(held, id)
				mu.Unlock()
				p.put(id)
			}
		})
	}
	wg.Wait()
	if got := p.inUse(); got != 0 {
		t.Errorf("inUse after every block came back = %d", got)
	}
}

func TestParseIDs(t *testing.T) {
	t.Parallel()
	r := IDRange{First: 1000, Count: 1000} // 1000-1999
	for _, tc := range []struct {
		name, text string
		want       []account
	}{
		{"passwd", strings.Join([]string{
			"root:x:0:0:root:/root:/bin/bash",
			"alice:x:1000:1000:Alice:/home/alice:/bin/sh",
			"bob:x:1500:100::/home/bob:/bin/sh",
			"carol:x:1999:1999::/home/carol:/bin/sh",
			"dave:x:2000:1000::/home/dave:/bin/sh", // just above
			"erin:x:999:1000::/home/erin:/bin/sh",  // just below
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
		}, "\n"), []account{{"alice", 1000}, {"bob", 1500}, {"carol", 1999}}},
		{"group", strings.Join([]string{
			"root:x:0:",
			"staff:x:1200:alice,bob",
			"jobs:x:1999:",
			"users:x:100:",
			"nogroup:x:65534:",
			"big:x:2000:carol",
		}, "\n") + "\n", []account{{"staff", 1200}, {"jobs", 1999}}},
		{"comments", strings.Join([]string{
			"# old:x:1100:1100::/:/bin/sh",
			"#old:x:1101:1101::/:/bin/sh",
			"#",
			"kept:x:1102:1102::/:/bin/sh",
		}, "\n"), []account{{"kept", 1102}}},
		{"NIS lines", strings.Join([]string{
			"+::::::",
			"+@admins::::::",
			"-baduser::::::",
			"+:::",
			"+",
			"kept:x:1300:",
		}, "\n"), []account{{"kept", 1300}}},
		{"malformed lines", strings.Join([]string{
			"",
			"justaname",
			"two:fields",
			"noid:x::1000::/:/bin/sh",
			"letters:x:abc:1000::/:/bin/sh",
			"negative:x:-1500:1000::/:/bin/sh",
			"signed:x:+1500:1000::/:/bin/sh",
			"spaced:x: 1500:1000::/:/bin/sh",
			"hex:x:0x5dc:1000::/:/bin/sh",
			"overflow:x:4294968796:1000::/:/bin/sh", // 2^32 + 1500
			"kept:x:1400:1000::/:/bin/sh",
		}, "\n"), []account{{"kept", 1400}}},
		{"gid in range, uid not", "frank:x:500:1500::/:/bin/sh\n", nil},
		{"windows line endings", "win:x:1600:1600::/:/bin/sh\r\ngrp:x:1601:\r\n", []account{{"win", 1600}, {"grp", 1601}}},
		{"empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseIDsIn(strings.NewReader(tc.text), "/etc/test", r)
			if err != nil {
				t.Fatalf("parseIDsIn: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseIDsIn = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseIDs_ReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	got, err := parseIDsIn(iotest.ErrReader(boom), "/etc/broken", IDRange{0, 10})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "/etc/broken") {
		t.Fatalf("parseIDsIn of a failing reader = %v, %v; want an error naming /etc/broken and wrapping the read's", got, err)
	}
}

func TestIDsIn_File(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	if err := os.WriteFile(file, []byte("root:x:0:0::/root:/bin/sh\njob:x:61200:61200::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := idsIn(file, DefaultDynamicIDs)
	if err != nil || !reflect.DeepEqual(got, []account{{"job", 61200}}) {
		t.Errorf("idsIn(%s) = %+v, %v; want job 61200", file, got, err)
	}
	// A missing file has no accounts.
	got, err = idsIn(filepath.Join(dir, "missing"), DefaultDynamicIDs)
	if err != nil || got != nil {
		t.Errorf("idsIn of a missing file = %+v, %v; want nothing", got, err)
	}
}
