package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reader reads a ring as an attached client would: every event in order,
// acknowledging each (unless holding), until the end.
type reader struct {
	rg       *ring
	sendWait time.Duration
	hold     atomic.Bool // stop acknowledging: the ring fills

	mu   sync.Mutex
	got  [3][]byte // by Stream
	seqs []uint64
	exit *Exit
	done chan struct{}
}

func newReader(rg *ring) *reader {
	r := &reader{rg: rg, done: make(chan struct{})}
	go r.run()
	return r
}

func (r *reader) run() {
	defer close(r.done)
	for want := uint64(1); ; want++ {
		ev, err := r.rg.next(want, nil)
		if err != nil {
			return
		}
		time.Sleep(r.sendWait)
		r.mu.Lock()
		r.seqs = append(r.seqs, ev.Seq)
		r.got[ev.Stream] = append(r.got[ev.Stream], ev.Data...)
		ev.Release()
		if ev.Exit != nil {
			r.exit = ev.Exit
			r.mu.Unlock()
			r.rg.ack(ev.Seq)
			return
		}
		r.mu.Unlock()
		for r.hold.Load() {
			time.Sleep(time.Millisecond)
		}
		r.rg.ack(ev.Seq)
	}
}

func (r *reader) received(s Stream) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.got[s])
}

// waitReceived waits until the reader has n bytes of s.
func (r *reader) waitReceived(t *testing.T, s Stream, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.received(s)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("reader got %d bytes of %s, want %d", len(r.received(s)), s, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// relayRig is a relay between two pipes, standing in for the process's
// stdout and stderr, and a ring, read by a reader unless abandoned.
type relayRig struct {
	r          *relay
	ring       *ring
	rd         *reader // nil: the ring is abandoned from the start
	outW, errW *os.File
	wrote      [3]atomic.Int64
	counts     [3]atomic.Int64 // the relay's, by Stream
	lastIO     atomic.Int64
	// exitedAt is when a row reported the reap; endedAt when wait returned.
	exitedAt, endedAt time.Time

	mu      sync.Mutex
	stops   []Reason
	reports int
	endSeq  uint64
}

func newRelayRig(t *testing.T, read bool, maxOutput int64, ringBytes int64, text bool) *relayRig {
	t.Helper()
	rg := &relayRig{}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	rg.outW, rg.errW = outW, errW
	// The job closes its ends after wait; the writers may be held open on
	// purpose (a descendant), so they are closed last.
	t.Cleanup(func() {
		for _, f := range []*os.File{outR, errR, outW, errW} {
			f.Close()
		}
	})
	rg.ring = newRing(newBudget(64<<20), ringBytes)
	t.Cleanup(rg.ring.close)
	if read {
		rg.rd = newReader(rg.ring)
	} else {
		rg.ring.abandon()
	}
	rg.r = newRelay(rg.ring, relayConfig{
		Stdout: outR, Stderr: errR,
		StdoutBytes: &rg.counts[Stdout], StderrBytes: &rg.counts[Stderr], LastIO: &rg.lastIO,
		MaxOutputBytes: maxOutput,
		Text:           text,
		Stop: func(r Reason, _ string) {
			rg.mu.Lock()
			defer rg.mu.Unlock()
			rg.stops = append(rg.stops, r)
		},
		Report: func() Exit {
			rg.mu.Lock()
			defer rg.mu.Unlock()
			rg.reports++
			return Exit{Reason: ReasonExit}
		},
		Ended: func(seq uint64) {
			rg.mu.Lock()
			defer rg.mu.Unlock()
			rg.endSeq = seq
		},
		Log: slog.New(slog.DiscardHandler),
	})
	return rg
}

// write writes p to stream s, as the process would.
func (rg *relayRig) write(t *testing.T, s Stream, p []byte) {
	t.Helper()
	w := rg.outW
	if s == Stderr {
		w = rg.errW
	}
	n, err := w.Write(p)
	rg.wrote[s].Add(int64(n))
	if err != nil {
		t.Errorf("write %s: %v", s, err)
	}
}

// exit closes the process's ends and reports the reap.
func (rg *relayRig) exit(drain time.Duration) {
	rg.outW.Close()
	rg.errW.Close()
	rg.r.exited(drain)
}

func (rg *relayRig) stopped() []Reason {
	rg.mu.Lock()
	defer rg.mu.Unlock()
	return slices.Clone(rg.stops)
}

// noise is n reproducible bytes, with a seed per stream.
func noise(seed uint64, n int) []byte {
	rnd := rand.New(rand.NewPCG(seed, 1))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rnd.Uint32())
	}
	return p
}

// writeInPieces writes p to s in writes of random sizes up to maxPiece.
func (rg *relayRig) writeInPieces(t *testing.T, s Stream, p []byte, maxPiece int) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(uint64(len(p)), 2))
	for len(p) > 0 {
		n := min(len(p), 1+rnd.IntN(maxPiece))
		rg.write(t, s, p[:n])
		p = p[n:]
	}
}

func lines(prefix string, n int) []byte {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s %d\n", prefix, i)
	}
	return []byte(b.String())
}

// Ensure the relay, alone between pipes and a ring, puts every byte of
// each stream in the ring in order, waits for room rather than dropping,
// never blocks when nobody reads, and puts the end last, after all output
// and the reap.
func TestRelay(t *testing.T) {
	big := noise(1, 3<<20) // several big chunks' worth
	out, errs := lines("out", 20000), lines("err", 20000)
	text := []byte(strings.Repeat("héllo wörld ✓ ", 40000))
	tests := []struct {
		name      string
		noReader  bool // the ring is abandoned: output is read and dropped
		sendWait  time.Duration
		maxOutput int64
		ringBytes int64
		text      bool
		// run feeds the relay as a process would, and ends it.
		run func(t *testing.T, rg *relayRig)
		// check looks at what the reader got; the harness has checked
		// already that the relay counted every byte written and put the
		// end last, once.
		check func(t *testing.T, rg *relayRig)
	}{
		{
			name: "all bytes delivered in order",
			run: func(t *testing.T, rg *relayRig) {
				rg.writeInPieces(t, Stdout, big, 300<<10)
				rg.write(t, Stderr, []byte("done\n"))
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				if got := rg.rd.received(Stdout); !bytes.Equal(got, big) {
					t.Errorf("stdout: got %d bytes, want the %d written, in order", len(got), len(big))
				}
				if got := rg.rd.received(Stderr); string(got) != "done\n" {
					t.Errorf("stderr: got %q", got)
				}
				if s := rg.stopped(); len(s) != 0 {
					t.Errorf("relay asked the job to stop: %v", s)
				}
			},
		},
		{
			name: "stdout and stderr interleave, each in order",
			run: func(t *testing.T, rg *relayRig) {
				var wg sync.WaitGroup
				wg.Go(func() { rg.writeInPieces(t, Stdout, out, 100) })
				wg.Go(func() { rg.writeInPieces(t, Stderr, errs, 100) })
				wg.Wait()
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				if got := rg.rd.received(Stdout); !bytes.Equal(got, out) {
					t.Errorf("stdout: got %d bytes, want the %d written, in order", len(got), len(out))
				}
				if got := rg.rd.received(Stderr); !bytes.Equal(got, errs) {
					t.Errorf("stderr: got %d bytes, want the %d written, in order", len(got), len(errs))
				}
			},
		},
		{
			name:     "a slow reader gets everything",
			sendWait: 2 * time.Millisecond,
			run: func(t *testing.T, rg *relayRig) {
				rg.writeInPieces(t, Stdout, big[:1<<20], 8<<10)
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				if got := rg.rd.received(Stdout); !bytes.Equal(got, big[:1<<20]) {
					t.Errorf("stdout: got %d bytes, want the %d written, in order", len(got), 1<<20)
				}
			},
		},
		{
			name:      "a full ring holds the writer back, and loses nothing",
			ringBytes: 64 << 10,
			run: func(t *testing.T, rg *relayRig) {
				rg.rd.hold.Store(true)
				done := make(chan struct{})
				go func() {
					defer close(done)
					rg.writeInPieces(t, Stdout, big[:2<<20], 16<<10)
				}()
				time.Sleep(200 * time.Millisecond)
				select {
				case <-done:
					t.Error("the writer wrote 2 MiB past a 64 KiB ring nobody acknowledged")
				default:
				}
				if b, _, _, _ := rg.ring.held(); b > 64<<10 {
					t.Errorf("ring holds %d bytes, past its 64 KiB", b)
				}
				rg.rd.hold.Store(false)
				<-done
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				if got := rg.rd.received(Stdout); !bytes.Equal(got, big[:2<<20]) {
					t.Errorf("stdout: got %d bytes, want the %d written, in order", len(got), 2<<20)
				}
			},
		},
		{
			name: "text keeps characters whole",
			text: true,
			run: func(t *testing.T, rg *relayRig) {
				rg.writeInPieces(t, Stdout, text, 997)
				rg.write(t, Stdout, []byte("\xe2\x9c")) // ends inside a character
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				want := append(bytes.Clone(text), 0xe2, 0x9c)
				if got := rg.rd.received(Stdout); !bytes.Equal(got, want) {
					t.Errorf("stdout: got %d bytes, want the %d written, in order", len(got), len(want))
				}
				rg.rd.mu.Lock()
				defer rg.rd.mu.Unlock()
				if n := len(rg.rd.seqs); n < 3 {
					t.Errorf("%d events", n)
				}
			},
		},
		{
			name:      "output limit hit",
			maxOutput: 100_000,
			run: func(t *testing.T, rg *relayRig) {
				var wg sync.WaitGroup
				wg.Go(func() { rg.writeInPieces(t, Stdout, big[:300_000], 10_000) })
				wg.Go(func() { rg.writeInPieces(t, Stderr, errs[:50_000], 10_000) })
				wg.Wait() // the process is not held up: output past the limit is read
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				gotOut, gotErr := rg.rd.received(Stdout), rg.rd.received(Stderr)
				if n := len(gotOut) + len(gotErr); n != 100_000 {
					t.Errorf("reader got %d bytes, want max_output's 100000", n)
				}
				if !bytes.HasPrefix(big, gotOut) || !bytes.HasPrefix(errs, gotErr) {
					t.Error("reader's bytes are not the start of each stream")
				}
				if s := rg.stopped(); len(s) == 0 || slices.IndexFunc(s, func(r Reason) bool { return r != ReasonOutputLimit }) >= 0 {
					t.Errorf("stops %v, want output-limit only", s)
				}
			},
		},
		{
			name:      "abandoned mid-stream: the writer is never held",
			ringBytes: 64 << 10,
			run: func(t *testing.T, rg *relayRig) {
				rg.rd.hold.Store(true)
				rg.write(t, Stdout, []byte("seen\n"))
				rg.rd.waitReceived(t, Stdout, 5)
				rg.ring.abandon()
				// Far more than a pipe and the ring hold: the writer must not block.
				rg.writeInPieces(t, Stdout, big[:2<<20], 4<<10)
				rg.exit(time.Minute)
				rg.rd.hold.Store(false)
			},
		},
		{
			name:     "nobody reads",
			noReader: true,
			run: func(t *testing.T, rg *relayRig) {
				rg.writeInPieces(t, Stdout, big[:1<<20], 64<<10)
				rg.exit(time.Minute)
			},
		},
		{
			name: "descendant holds the pipes after exit",
			run: func(t *testing.T, rg *relayRig) {
				rg.write(t, Stdout, []byte("before exit\n"))
				rg.rd.waitReceived(t, Stdout, 12)
				rg.exitedAt = time.Now()
				rg.r.exited(100 * time.Millisecond) // outW and errW stay open
			},
			check: func(t *testing.T, rg *relayRig) {
				if d := rg.endedAt.Sub(rg.exitedAt); d < 100*time.Millisecond || d > 5*time.Second {
					t.Errorf("relay ended %v after the reap, want about the 100ms drain bound", d)
				}
				if got := rg.rd.received(Stdout); string(got) != "before exit\n" {
					t.Errorf("stdout: got %q", got)
				}
			},
		},
		{
			name: "end waits for the reap",
			run: func(t *testing.T, rg *relayRig) {
				rg.write(t, Stdout, []byte("out"))
				rg.write(t, Stderr, []byte("err"))
				rg.outW.Close()
				rg.errW.Close()
				rg.rd.waitReceived(t, Stdout, 3)
				rg.rd.waitReceived(t, Stderr, 3)
				time.Sleep(50 * time.Millisecond)
				rg.mu.Lock()
				reports := rg.reports
				rg.mu.Unlock()
				if reports != 0 {
					t.Error("end reported before the reap")
				}
				rg.r.exited(time.Minute)
			},
		},
		{
			name: "end waits for the output",
			run: func(t *testing.T, rg *relayRig) {
				rg.r.exited(time.Minute) // a descendant writes on, within the bound
				rg.writeInPieces(t, Stderr, big[:1<<20], 64<<10)
				rg.writeInPieces(t, Stdout, big[1<<20:2<<20], 64<<10)
				rg.outW.Close()
				rg.errW.Close()
			},
			check: func(t *testing.T, rg *relayRig) {
				if got := rg.rd.received(Stderr); !bytes.Equal(got, big[:1<<20]) {
					t.Errorf("stderr: got %d bytes of %d", len(got), 1<<20)
				}
				if got := rg.rd.received(Stdout); !bytes.Equal(got, big[1<<20:2<<20]) {
					t.Errorf("stdout: got %d bytes of %d", len(got), 1<<20)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goroutines := runtime.NumGoroutine()
			ringBytes := cmpOr(tt.ringBytes, DefaultReplayBytes)
			rg := newRelayRig(t, !tt.noReader, tt.maxOutput, ringBytes, tt.text)
			if rg.rd != nil {
				rg.rd.sendWait = tt.sendWait
			}
			rg.r.start()
			tt.run(t, rg)
			done := make(chan Exit, 1)
			go func() { done <- rg.r.wait() }()
			select {
			case e := <-done:
				rg.endedAt = time.Now()
				if e.Reason != ReasonExit {
					t.Errorf("wait returned %+v, want Report's end", e)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("relay did not end")
			}
			for _, s := range []Stream{Stdout, Stderr} {
				if got, want := rg.counts[s].Load(), rg.wrote[s].Load(); got != want {
					t.Errorf("%s: counted %d bytes, %d were written", s, got, want)
				}
			}
			rg.mu.Lock()
			reports, endSeq := rg.reports, rg.endSeq
			rg.mu.Unlock()
			if reports != 1 {
				t.Errorf("%d reports of the end, want 1", reports)
			}
			if rd := rg.rd; rd != nil && !tt.noReader {
				select {
				case <-rd.done:
				case <-time.After(10 * time.Second):
					t.Fatal("reader never got the end")
				}
				rd.mu.Lock()
				if tt.name != "abandoned mid-stream: the writer is never held" {
					if rd.exit == nil || len(rd.seqs) == 0 || rd.seqs[len(rd.seqs)-1] != endSeq {
						t.Errorf("the end (seq %d) is not the last event the reader got (%v)", endSeq, rd.exit)
					}
					for i, seq := range rd.seqs {
						if seq != uint64(i+1) {
							t.Errorf("event %d has seq %d", i, seq)
							break
						}
					}
				}
				rd.mu.Unlock()
			}
			if tt.check != nil {
				tt.check(t, rg)
			}
			rg.ring.close()
			// The pumps, the reporter and the reader are gone (the drain
			// timer, stopped, never ran).
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > goroutines {
				if time.Now().After(deadline) {
					t.Fatalf("%d goroutines left running, %d before", runtime.NumGoroutine(), goroutines)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

func cmpOr(a, b int64) int64 {
	if a != 0 {
		return a
	}
	return b
}

// Ensure a reader that counts as attached, and so reads ahead for a pump
// that waits for it (fill, backlog), gets every byte in order, with the
// end last, however the writes and reads interleave.
func TestRelayAttachedReader(t *testing.T) {
	for i := range 20 {
		rg := newRelayRig(t, true, 0, DefaultReplayBytes, false)
		rg.ring.addReader(1)
		rg.r.start()
		big := noise(uint64(i), 4<<20)
		rg.writeInPieces(t, Stdout, big, 8<<10)
		rg.write(t, Stderr, []byte("done\n"))
		rg.exit(time.Minute)
		done := make(chan Exit, 1)
		go func() { done <- rg.r.wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("run %d: relay did not end", i)
		}
		select {
		case <-rg.rd.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: reader never got the end", i)
		}
		rg.ring.addReader(-1)
		if got := rg.rd.received(Stdout); !bytes.Equal(got, big) {
			t.Fatalf("run %d: stdout: got %d bytes, want the %d written, in order", i, len(got), len(big))
		}
		if got := rg.rd.received(Stderr); string(got) != "done\n" {
			t.Fatalf("run %d: stderr: got %q", i, got)
		}
		rg.rd.mu.Lock()
		for j, seq := range rg.rd.seqs {
			if seq != uint64(j+1) {
				t.Fatalf("run %d: event %d has seq %d", i, j, seq)
			}
		}
		rg.rd.mu.Unlock()
	}
}

// Ensure a reader whose read-ahead (fill) puts nothing in, while a pump
// puts its event in meanwhile, takes that event rather than waiting for
// another.
func TestRingFillMeanwhile(t *testing.T) {
	rg := newRing(newBudget(1<<20), 64<<10)
	defer rg.close()
	rg.setFill(func() {
		grant, _ := rg.tryReserve(1)
		rg.commit(Stdout, []byte("x"), nil, grant) // the pump's, meanwhile
	})
	mustNext(t, rg, 1, 1, "x") // the event the pump put in
}

// mustNext takes the event after want-1 from rg, waiting up to 5 s, and
// checks its seq and data.
func mustNext(t *testing.T, rg *ring, want, wantSeq uint64, wantData string) {
	t.Helper()
	stop := make(chan struct{})
	timer := time.AfterFunc(5*time.Second, func() { close(stop) })
	defer timer.Stop()
	ev, err := rg.next(want, stop)
	if err != nil {
		t.Fatalf("next(%d): %v, want event %d", want, err, wantSeq)
	}
	defer ev.Release()
	if ev.Seq != wantSeq || string(ev.Data) != wantData {
		t.Fatalf("next(%d): seq %d %q, want %d %q", want, ev.Seq, ev.Data, wantSeq, wantData)
	}
}

// Ensure a reader that asks for an event the ring has evicted, when it
// holds none at all, waits for the next one (its seq says what was lost)
// rather than failing inside the ring's lock: it once indexed an empty
// ring, and the panic left the lock held.
func TestRingNextAllEvicted(t *testing.T) {
	rg := newRing(newBudget(1<<20), 64<<10)
	defer rg.close()
	put := func(data string) {
		grant, _ := rg.tryReserve(len(data))
		rg.commit(Stdout, []byte(data), nil, grant)
	}
	put("a")
	put("b")
	rg.ack(2)
	rg.evictWhileLocked(func(int64) bool { return true }) // as room would
	if bytes, first, _, _ := rg.held(); bytes != 0 || first != 3 {
		t.Fatalf("held %d bytes from seq %d: want none, from 3", bytes, first)
	}
	stop := make(chan struct{})
	close(stop)
	if _, err := rg.next(1, stop); !errors.Is(err, errWaitStopped) {
		t.Fatalf("next(1) of an empty ring: %v, want it to wait (stopped)", err)
	}
	go put("c")
	mustNext(t, rg, 1, 3, "c") // 1 and 2 evicted
}
