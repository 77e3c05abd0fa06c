package supervisor

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// relay carries a job's stdout and stderr to its client and then reports the
// job's end to it: the process-to-client half of websocketd's PipeEndpoints
// (the client-to-process half is Job.inputLoop, on Run's goroutine).
//
// Goroutines: start runs two, both owned by the relay: the stderr pump, and
// the stdout pump, which afterwards waits for the stderr pump and for exited,
// then reports the end. wait returns that end once both goroutines are done;
// the job calls it once, and nothing of the relay runs afterwards but a drain
// timer that has already fired (it only sets deadlines, see below).
//
// Ordering: each stream's chunks reach Client.Send in the order they were
// read, one Send at a time per stream; the two streams are not ordered
// against each other, so stdout and stderr may interleave. After the last
// Send of both streams and once the process has been reaped come, in this
// order: Client.Flush, report (the job's end, recorded), and Client.Finish,
// the last call. The client therefore hears of the end only after every
// byte it will get.
//
// Bytes: every byte read is counted, and every byte read reaches Send while
// the client takes them and the output limit allows, so nothing is lost
// before the end of a stream but what the limit or the client's departure
// drops. Past MaxOutputBytes (stdout and stderr together), the excess is
// counted but not sent, and the job is asked to stop. Once the client is
// gone (clientGone was called or a Send failed) output is still read, and
// dropped, so the process never blocks on a full pipe while it ends.
// Memory is bounded: a pump holds one pooled chunk (see getChunk), only
// while it reads and sends it.
//
// Ending: a pump ends at EOF or a read error. The process's descendants may
// hold the pipes open after it exits: exited(drain) arms the drain bound,
// which passes the deadline of both files (reads and writes) drain after
// the reap, so the pumps end then and the output still unread is dropped.
// A Send blocked on a slow client is not ended by the drain bound; the
// Client contract bounds it (an adapter's write timeout makes Send fail, and
// the relay then reads on and drops). A relay whose process never exits
// never ends: the job ends its process, so exited comes.
type relay struct {
	client Client // nil: there is none, output is read and dropped
	cfg    relayConfig

	gone atomic.Bool // no more output goes to the client
	over atomic.Bool // past MaxOutputBytes: the job was asked to stop
	// pending holds the end's report back until the stderr pump has
	// returned and the process has been reaped (exited). Done by exited
	// also publishes drain to the reporter.
	pending sync.WaitGroup
	drain   *time.Timer // written by exited, before pending.Done
	done    chan Exit   // the end, sent once by the reporter; wait receives it
}

// relayConfig is what a relay needs of its job.
type relayConfig struct {
	// Stdout and Stderr are pollable (deadlines work); the job closes them
	// after wait. Stderr may share its descriptor with stdin: the drain
	// bound ends writes to it too.
	Stdout, Stderr *os.File
	// StdoutBytes and StderrBytes count every byte read; LastIO is set to
	// the time of each read (unix ns). The job reads them at any time.
	StdoutBytes, StderrBytes, LastIO *atomic.Int64
	// MaxOutputBytes is how much stdout and stderr together may reach the
	// client; 0 or less means no limit.
	MaxOutputBytes int64
	// Tap, when set, takes every chunk the limit lets through, in the
	// order read, before the client is sent it, whether or not the client
	// is still there (the spool). It is called from either pump, one
	// call per pump at a time, and must not block for long.
	Tap func(s Stream, p []byte)
	// Stop asks the job to end, for ReasonOutputLimit or ReasonClientGone
	// (a Send failed). It is called from either pump, maybe more than once,
	// and must not block on output.
	Stop func(r Reason, detail string)
	// Report takes the job's end, after Flush and before Finish; it is
	// called once, on the reporter.
	Report func() Exit
	// Answering is held around Finish, so an answer the client awaits (an
	// Input.Done under way) is sent before the end.
	Answering sync.Locker
	Log       *slog.Logger
}

// newRelay prepares a relay from the process's output to c (nil: none).
// Call start, then exited once the process is reaped, then wait.
func newRelay(c Client, cfg relayConfig) *relay {
	r := &relay{client: c, cfg: cfg, done: make(chan Exit, 1)}
	r.pending.Add(1) // the reap: see exited
	return r
}

// start runs the two pumps.
func (r *relay) start() {
	r.pending.Go(func() { r.pump(Stderr, r.cfg.Stderr, r.cfg.StderrBytes) })
	go func() {
		r.pump(Stdout, r.cfg.Stdout, r.cfg.StdoutBytes)
		r.pending.Wait()
		r.done <- r.finish()
	}()
}

// exited tells the relay the process has been reaped: the pumps have drain
// longer to read what is left. Call it once, after start; it does not block.
func (r *relay) exited(drain time.Duration) {
	r.drain = time.AfterFunc(drain, r.stopDraining)
	r.pending.Done()
}

// clientGone stops delivery: from now on output is read and dropped, and
// the end is not reported (the client is closed instead).
func (r *relay) clientGone() { r.gone.Store(true) }

// wait returns the job's end once the relay has reported it. Call it once.
func (r *relay) wait() Exit { return <-r.done }

// stopDraining passes both files' deadlines: the pumps end and the output
// still unread is dropped. Run after wait it is harmless: the pumps are done,
// and on closed files it does nothing.
func (r *relay) stopDraining() {
	past := time.Unix(1, 0)
	for _, f := range []*os.File{r.cfg.Stderr, r.cfg.Stdout} {
		if err := f.SetDeadline(past); err != nil && !errors.Is(err, os.ErrClosed) {
			r.cfg.Log.Warn("end output drain", "err", err)
		}
	}
}

// finish runs once output is drained and the process reaped: it flushes the
// client, takes the end and reports it, last.
func (r *relay) finish() Exit {
	r.drain.Stop()
	c, gone := r.client, r.gone.Load()
	if c != nil && !gone {
		if err := c.Flush(); err != nil {
			r.cfg.Log.Debug("flush client", "err", err)
		}
	}
	e := r.cfg.Report()
	switch {
	case c == nil:
	case !gone:
		r.cfg.Answering.Lock()
		err := c.Finish(e)
		r.cfg.Answering.Unlock()
		if err != nil {
			r.cfg.Log.Debug("finish client", "err", err)
		}
	default:
		if err := c.Close(); err != nil {
			r.cfg.Log.Debug("close client", "err", err)
		}
	}
	return e
}

// pump copies one output stream to the client until EOF, a read error or
// the drain bound.
func (r *relay) pump(s Stream, f *os.File, counter *atomic.Int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		r.cfg.Log.Error("pump: raw conn", "stream", s, "err", err)
		return
	}
	streaming := false // the last read would have filled a small buffer
	for {
		bp, n, err := readChunk(rc, streaming)
		streaming = n >= smallChunkBytes
		if n > 0 {
			counter.Add(int64(n))
			r.cfg.LastIO.Store(time.Now().UnixNano())
			if allowed := r.allowed(n); allowed > 0 {
				if r.cfg.Tap != nil {
					r.cfg.Tap(s, (*bp)[:allowed])
				}
				r.deliver(s, (*bp)[:allowed])
			}
		}
		if bp != nil {
			putChunk(bp)
		}
		if err != nil {
			// ECONNRESET: the process exited with stdin it never read.
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, syscall.ECONNRESET) {
				r.cfg.Log.Warn("read job output", "stream", s, "err", err)
			}
			return
		}
	}
}

// allowed returns how many of the n bytes just counted may still go to the
// client; passing the limit asks the job to stop.
func (r *relay) allowed(n int) int {
	limit := r.cfg.MaxOutputBytes
	if limit <= 0 {
		return n
	}
	total := r.cfg.StdoutBytes.Load() + r.cfg.StderrBytes.Load()
	if total <= limit {
		return n
	}
	if r.over.CompareAndSwap(false, true) { // once: a runaway job keeps writing through the grace
		r.cfg.Stop(ReasonOutputLimit, fmt.Sprintf("more than max_output %d bytes", limit))
	}
	return max(0, n-int(min(total-limit, int64(n))))
}

// deliver sends p to the client unless it is gone; a failed Send makes it
// gone and asks the job to stop.
func (r *relay) deliver(s Stream, p []byte) {
	if r.client == nil || r.gone.Load() {
		return
	}
	if err := r.client.Send(s, p); err != nil {
		r.gone.Store(true)
		r.cfg.Stop(ReasonClientGone, "send: "+err.Error())
	}
}

// Output is read in chunks. A read takes a small buffer, so a quiet or chatty
// job costs little, unless its last read got a small buffer's worth or more:
// a streaming job reads big chunks, and makes fewer, larger messages (binary output is
// about a tenth faster). Buffers are pooled and held only while one read's
// data is delivered, so an idle job holds none. At most bigChunksOut big
// buffers are out at once, server-wide: streaming jobs behind slow clients
// hold at most that many beyond their small ones.
const (
	smallChunkBytes = 64 << 10
	bigChunkBytes   = 256 << 10
	bigChunksOut    = 64
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallChunkBytes); return &b }}
	bigPool   = sync.Pool{New: func() any { b := make([]byte, bigChunkBytes); return &b }}
	bigOut    atomic.Int64
)

// getChunk returns a big buffer if big is asked for and the budget allows.
func getChunk(big bool) *[]byte {
	if big {
		if bigOut.Add(1) <= bigChunksOut {
			return bigPool.Get().(*[]byte)
		}
		bigOut.Add(-1)
	}
	return smallPool.Get().(*[]byte)
}

func putChunk(bp *[]byte) {
	if len(*bp) == bigChunkBytes {
		bigPool.Put(bp)
		bigOut.Add(-1)
		return
	}
	smallPool.Put(bp)
}

// readChunk reads what the stream has, waiting for it in the poller. The
// caller puts the buffer back with putChunk once the data is delivered.
func readChunk(rc syscall.RawConn, big bool) (*[]byte, int, error) {
	var (
		bp   *[]byte
		n    int
		rerr error
	)
	err := rc.Read(func(fd uintptr) bool {
		bp = getChunk(big)
		for {
			n, rerr = syscall.Read(int(fd), *bp)
			if !errors.Is(rerr, syscall.EINTR) {
				break
			}
		}
		if errors.Is(rerr, syscall.EAGAIN) {
			putChunk(bp)
			bp = nil
			return false
		}
		return true
	})
	switch {
	case err != nil:
		return bp, 0, err
	case rerr != nil:
		return bp, 0, rerr
	case n == 0:
		return bp, 0, io.EOF
	}
	return bp, n, nil
}
