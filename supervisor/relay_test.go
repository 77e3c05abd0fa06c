package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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

// fakeClient records what a relay does to it, in order.
type fakeClient struct {
	failSend int // the failSend-th Send fails (counting from 1); 0: none do
	sendWait time.Duration

	mu     sync.Mutex
	calls  []string  // "send", "flush", "report" (the relay's Report), "finish", "close"
	got    [3][]byte // by Stream
	sends  int
	exit   *Exit
	closed chan struct{}
}

var errFakeGone = errors.New("fake client: connection reset")

func newFakeClient() *fakeClient { return &fakeClient{closed: make(chan struct{})} }

func (c *fakeClient) Receive() (Input, error) {
	<-c.closed
	return Input{}, io.EOF
}

func (c *fakeClient) Send(s Stream, p []byte) error {
	time.Sleep(c.sendWait)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sends++
	c.calls = append(c.calls, "send")
	if c.sends == c.failSend {
		return errFakeGone
	}
	c.got[s] = append(c.got[s], p...)
	return nil
}

func (c *fakeClient) Flush() error { c.call("flush"); return nil }

func (c *fakeClient) Finish(e Exit) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "finish")
	c.exit = &e
	return nil
}

func (c *fakeClient) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "close")
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

func (c *fakeClient) MessagesOut() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(c.sends)
}

func (c *fakeClient) call(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, name)
}

func (c *fakeClient) received(s Stream) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.got[s])
}

func (c *fakeClient) callLog() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// waitReceived waits until the client has n bytes of s.
func (c *fakeClient) waitReceived(t *testing.T, s Stream, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.received(s)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("client got %d bytes of %s, want %d", len(c.received(s)), s, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// relayRig is a relay between two pipes, standing in for the process's
// stdout and stderr, and a fake client.
type relayRig struct {
	r          *relay
	client     *fakeClient // nil: the relay has none
	outW, errW *os.File    // the process's ends
	wrote      [3]atomic.Int64
	counts     [3]atomic.Int64 // the relay's, by Stream
	lastIO     atomic.Int64
	answering  sync.Mutex
	// exitedAt is when a row reported the reap; endedAt when wait returned.
	exitedAt, endedAt time.Time

	mu    sync.Mutex
	stops []Reason
	calls []string // without a client: the relay's Report
}

func newRelayRig(t *testing.T, c *fakeClient, maxOutput int64) *relayRig {
	t.Helper()
	rg := &relayRig{client: c}
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
	var client Client
	if c != nil {
		client = c
	}
	rg.r = newRelay(client, relayConfig{
		Stdout: outR, Stderr: errR,
		StdoutBytes: &rg.counts[Stdout], StderrBytes: &rg.counts[Stderr], LastIO: &rg.lastIO,
		MaxOutputBytes: maxOutput,
		Stop: func(r Reason, _ string) {
			rg.mu.Lock()
			defer rg.mu.Unlock()
			rg.stops = append(rg.stops, r)
		},
		Report: func() Exit {
			if c != nil {
				c.call("report")
			} else {
				rg.mu.Lock()
				rg.calls = append(rg.calls, "report")
				rg.mu.Unlock()
			}
			return Exit{Reason: ReasonExit}
		},
		Answering: &rg.answering,
		Log:       slog.New(slog.DiscardHandler),
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

// Ensure the relay, alone between fake endpoints, delivers every byte of
// each stream in order, ends without blocking whatever the client does, and
// reports the end last, after all output and the reap.
func TestRelay(t *testing.T) {
	big := noise(1, 3<<20) // several big chunks' worth
	out, errs := lines("out", 20000), lines("err", 20000)
	tests := []struct {
		name      string
		client    *fakeClient // nil: no client
		maxOutput int64
		// run feeds the relay as a process would, and ends it.
		run func(t *testing.T, rg *relayRig)
		// check looks at what the client got; the rig's harness has checked
		// already that the relay counted every byte written and reported
		// the end last, once.
		check func(t *testing.T, rg *relayRig)
	}{
		{
			name:   "all bytes delivered in order",
			client: newFakeClient(),
			run: func(t *testing.T, rg *relayRig) {
				rg.writeInPieces(t, Stdout, big, 300<<10)
				rg.write(t, Stderr, []byte("done\n"))
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				if got := rg.client.received(Stdout); !bytes.Equal(got, big) {
					t.Errorf("stdout: got %d bytes, want the %d written, in order", len(got), len(big))
				}
				if got := rg.client.received(Stderr); string(got) != "done\n" {
					t.Errorf("stderr: got %q", got)
				}
				if s := rg.stopped(); len(s) != 0 {
					t.Errorf("relay asked the job to stop: %v", s)
				}
			},
		},
		{
			name:   "stdout and stderr interleave, each in order",
			client: newFakeClient(),
			run: func(t *testing.T, rg *relayRig) {
				var wg sync.WaitGroup
				wg.Go(func() { rg.writeInPieces(t, Stdout, out, 100) })
				wg.Go(func() { rg.writeInPieces(t, Stderr, errs, 100) })
				wg.Wait()
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				if got := rg.client.received(Stdout); !bytes.Equal(got, out) {
					t.Errorf("stdout: got %d bytes, want the %d written, in order", len(got), len(out))
				}
				if got := rg.client.received(Stderr); !bytes.Equal(got, errs) {
					t.Errorf("stderr: got %d bytes, want the %d written, in order", len(got), len(errs))
				}
			},
		},
		{
			name:   "a slow client gets everything",
			client: &fakeClient{closed: make(chan struct{}), sendWait: 2 * time.Millisecond},
			run: func(t *testing.T, rg *relayRig) {
				rg.writeInPieces(t, Stdout, big[:1<<20], 8<<10)
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				if got := rg.client.received(Stdout); !bytes.Equal(got, big[:1<<20]) {
					t.Errorf("stdout: got %d bytes, want the %d written, in order", len(got), 1<<20)
				}
			},
		},
		{
			name:      "output limit hit",
			client:    newFakeClient(),
			maxOutput: 100_000,
			run: func(t *testing.T, rg *relayRig) {
				var wg sync.WaitGroup
				wg.Go(func() { rg.writeInPieces(t, Stdout, big[:300_000], 10_000) })
				wg.Go(func() { rg.writeInPieces(t, Stderr, errs[:50_000], 10_000) })
				wg.Wait() // the process is not held up: output past the limit is read
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				gotOut, gotErr := rg.client.received(Stdout), rg.client.received(Stderr)
				if n := len(gotOut) + len(gotErr); n != 100_000 {
					t.Errorf("client got %d bytes, want max_output's 100000", n)
				}
				if !bytes.HasPrefix(big, gotOut) || !bytes.HasPrefix(errs, gotErr) {
					t.Error("client's bytes are not the start of each stream")
				}
				if s := rg.stopped(); len(s) == 0 || slices.IndexFunc(s, func(r Reason) bool { return r != ReasonOutputLimit }) >= 0 {
					t.Errorf("stops %v, want output-limit only", s)
				}
				if rg.client.exit == nil {
					t.Error("a client past the limit was not told the end")
				}
			},
		},
		{
			name:   "client fails mid-stream",
			client: &fakeClient{closed: make(chan struct{}), failSend: 3},
			run: func(t *testing.T, rg *relayRig) {
				// Far more than a pipe holds: the writer must not block.
				rg.writeInPieces(t, Stdout, big[:2<<20], 4<<10)
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				if s := rg.stopped(); !slices.Equal(s, []Reason{ReasonClientGone}) {
					t.Errorf("stops %v, want client-gone once", s)
				}
				if n := rg.client.MessagesOut(); n != 3 {
					t.Errorf("%d sends, want none after the failed third", n)
				}
				if got := rg.client.received(Stdout); !bytes.HasPrefix(big, got) {
					t.Error("client's bytes are not the start of stdout")
				}
				if calls := rg.client.callLog(); slices.Contains(calls, "flush") || slices.Contains(calls, "finish") {
					t.Errorf("a gone client was flushed or told the end: %v", calls)
				}
			},
		},
		{
			name:   "client goes away",
			client: newFakeClient(),
			run: func(t *testing.T, rg *relayRig) {
				rg.write(t, Stdout, []byte("seen\n"))
				rg.client.waitReceived(t, Stdout, 5)
				rg.r.clientGone()
				rg.writeInPieces(t, Stdout, big[:1<<20], 64<<10)
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				if got := rg.client.received(Stdout); string(got) != "seen\n" {
					t.Errorf("client got %d bytes, want only the 5 sent before it went", len(got))
				}
				if calls := rg.client.callLog(); slices.Contains(calls, "flush") || slices.Contains(calls, "finish") {
					t.Errorf("a gone client was flushed or told the end: %v", calls)
				}
			},
		},
		{
			name: "no client",
			run: func(t *testing.T, rg *relayRig) {
				rg.writeInPieces(t, Stdout, big[:1<<20], 64<<10)
				rg.exit(time.Minute)
			},
			check: func(t *testing.T, rg *relayRig) {
				if !slices.Equal(rg.calls, []string{"report"}) {
					t.Errorf("reports %v, want one", rg.calls)
				}
			},
		},
		{
			name:   "descendant holds the pipes after exit",
			client: newFakeClient(),
			run: func(t *testing.T, rg *relayRig) {
				rg.write(t, Stdout, []byte("before exit\n"))
				rg.client.waitReceived(t, Stdout, 12)
				rg.exitedAt = time.Now()
				rg.r.exited(100 * time.Millisecond) // outW and errW stay open
			},
			check: func(t *testing.T, rg *relayRig) {
				if d := rg.endedAt.Sub(rg.exitedAt); d < 100*time.Millisecond || d > 5*time.Second {
					t.Errorf("relay ended %v after the reap, want about the 100ms drain bound", d)
				}
				if got := rg.client.received(Stdout); string(got) != "before exit\n" {
					t.Errorf("stdout: got %q", got)
				}
				if rg.client.exit == nil {
					t.Error("client not told the end")
				}
			},
		},
		{
			name:   "end waits for the reap",
			client: newFakeClient(),
			run: func(t *testing.T, rg *relayRig) {
				rg.write(t, Stdout, []byte("out"))
				rg.write(t, Stderr, []byte("err"))
				rg.outW.Close()
				rg.errW.Close()
				rg.client.waitReceived(t, Stdout, 3)
				rg.client.waitReceived(t, Stderr, 3)
				time.Sleep(50 * time.Millisecond)
				if calls := rg.client.callLog(); slices.Contains(calls, "report") {
					t.Errorf("end reported before the reap: %v", calls)
				}
				rg.r.exited(time.Minute)
			},
		},
		{
			name:   "end waits for the output",
			client: newFakeClient(),
			run: func(t *testing.T, rg *relayRig) {
				rg.r.exited(time.Minute) // a descendant writes on, within the bound
				rg.writeInPieces(t, Stderr, big[:1<<20], 64<<10)
				rg.writeInPieces(t, Stdout, big[1<<20:2<<20], 64<<10)
				rg.outW.Close()
				rg.errW.Close()
			},
			check: func(t *testing.T, rg *relayRig) {
				if got := rg.client.received(Stderr); !bytes.Equal(got, big[:1<<20]) {
					t.Errorf("stderr: got %d bytes of %d", len(got), 1<<20)
				}
				if got := rg.client.received(Stdout); !bytes.Equal(got, big[1<<20:2<<20]) {
					t.Errorf("stdout: got %d bytes of %d", len(got), 1<<20)
				}
			},
		},
		{
			name:   "end waits for an answer under way",
			client: newFakeClient(),
			run: func(t *testing.T, rg *relayRig) {
				rg.answering.Lock() // an input is being applied
				rg.exit(time.Minute)
				time.Sleep(50 * time.Millisecond)
				if calls := rg.client.callLog(); slices.Contains(calls, "finish") {
					t.Errorf("end reported while an answer was under way: %v", calls)
				}
				rg.answering.Unlock()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goroutines := runtime.NumGoroutine()
			rg := newRelayRig(t, tt.client, tt.maxOutput)
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
			if c := rg.client; c != nil {
				checkEndLast(t, c.callLog())
			}
			if tt.check != nil {
				tt.check(t, rg)
			}
			// The pumps and the reporter are gone (the drain timer, stopped,
			// never ran).
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

// checkEndLast checks a client's calls end with exactly one report of the
// end: flush, report, finish for a client still there, report, close for
// one gone; and that no send comes after either.
func checkEndLast(t *testing.T, calls []string) {
	t.Helper()
	i := slices.IndexFunc(calls, func(c string) bool { return c != "send" })
	if i < 0 {
		t.Fatalf("calls %v: the end was never reported", calls)
	}
	tail := calls[i:]
	if !slices.Equal(tail, []string{"flush", "report", "finish"}) && !slices.Equal(tail, []string{"report", "close"}) {
		t.Errorf("calls after the last send: %v, want flush, report, finish or report, close", tail)
	}
}
