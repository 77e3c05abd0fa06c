package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// relay carries a job's stdout and stderr into its ring, and then reports
// the job's end into it: the process-to-client half of websocketd's
// PipeEndpoints, up to the ring. Clients read the ring (see attachment);
// the relay never waits for one, only for room in the ring.
//
// Goroutines: start runs two, both owned by the relay: the stderr pump, and
// the stdout pump, which afterwards waits for the stderr pump and for exited,
// then reports the end. wait returns that end once both goroutines are done;
// the job calls it once, and nothing of the relay runs afterwards but a drain
// timer that has already fired (it only sets deadlines, see below).
//
// Reading ahead: a streaming pump waits while its attached client is busy
// (ring.backlog). A reader of the ring that has every event and would wait
// for the next reads what the pipe holds itself, on its own goroutine,
// in the pump's place (fill): it never waits there, and leaves the end,
// errors and a full ring to the pump. So a client that keeps up gets its
// output with no handoff between goroutines per event, as when a pump sent
// each chunk itself. Each stream is read by one goroutine at a time
// (source.mu), and nobody reads it once its pump has returned.
//
// Ordering: each stream's chunks enter the ring in the order they were
// read; the two streams are not ordered against each other, so stdout and
// stderr may interleave. The end (Report, which records it) comes after
// the last chunk of both streams and once the process has been reaped, and
// is then the ring's last event: a client hears of the end only after
// every byte it will get.
//
// Bytes: every byte read is counted, and every byte read enters the ring
// while the output limit allows and the ring takes it (it is not
// abandoned, or its job's spool still takes its events: see ring). Past
// MaxOutputBytes (stdout and stderr together), the excess is counted but
// not kept, and the job is asked to stop. A pump reserves room in the ring
// before it reads: when there is none (the ring full of unacknowledged
// events, or the server's budget spent) it waits without reading, and the
// program blocks on its full pipe. For a text app (Text) a chunk that ends
// inside a UTF-8 sequence keeps those bytes (at most three) for the
// stream's next chunk, so every event of valid text is valid text.
//
// Ending: a pump ends at EOF or a read error. The process's descendants may
// hold the pipes open after it exits: exited(drain) arms the drain bound,
// which passes the deadline of both files (reads and writes) drain after
// the reap, and ends a pump's wait for room, so the pumps end then and the
// output still unread is dropped. After the reap a pump may read past the
// ring's size by exitSlackBytes (what the pipe still holds), so the end is
// recorded at the exit, not when a client takes the rest. A relay whose
// process never exits never ends: the job ends its process, so exited
// comes.
type relay struct {
	ring *ring
	cfg  relayConfig

	over atomic.Bool // past MaxOutputBytes: the job was asked to stop
	// pending holds the end's report back until the stderr pump has
	// returned and the process has been reaped (exited). Done by exited
	// also publishes drain to the reporter.
	pending sync.WaitGroup
	drain   *time.Timer   // written by exited, before pending.Done
	drained chan struct{} // closed by the drain bound: waits for room end
	done    chan Exit     // the end, sent once by the reporter; wait receives it
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
	// ring; 0 or less means no limit.
	MaxOutputBytes int64
	// Text holds back a chunk's incomplete UTF-8 tail for the next chunk.
	Text bool
	// Stop asks the job to end, for ReasonOutputLimit. It is called from
	// either pump, maybe more than once, and must not block on output.
	Stop func(r Reason, detail string)
	// Report takes the job's end, once output is in the ring and the
	// process reaped; it is called once, on the reporter, and its end
	// becomes the ring's last event.
	Report func() Exit
	// Ended is told the seq of the end event, once it is in the ring.
	Ended func(seq uint64)
	Log   *slog.Logger
}

// newRelay prepares a relay from the process's output to rg.
// Call start, then exited once the process is reaped, then wait.
func newRelay(rg *ring, cfg relayConfig) *relay {
	r := &relay{ring: rg, cfg: cfg, done: make(chan Exit, 1), drained: make(chan struct{})}
	r.pending.Add(1) // the reap: see exited
	return r
}

// start runs the two pumps.
func (r *relay) start() {
	stdout := r.source(Stdout, r.cfg.Stdout, r.cfg.StdoutBytes)
	stderr := r.source(Stderr, r.cfg.Stderr, r.cfg.StderrBytes)
	r.ring.setFill(func() {
		if !r.fill(stdout) {
			r.fill(stderr)
		}
	})
	r.pending.Go(func() { r.pump(stderr) })
	go func() {
		r.pump(stdout)
		r.pending.Wait()
		r.done <- r.finish()
	}()
}

// source is one output stream as it is read. mu is held while a read and
// its commit are under way, by the pump or by a reader reading ahead for
// it (fill), so that its chunks enter the ring in the order they were read.
type source struct {
	s       Stream
	rc      syscall.RawConn // nil: the stream cannot be read
	counter *atomic.Int64

	mu        sync.Mutex
	streaming bool // the last read would have filled a small buffer
	busy      bool // the last read was more than a trickle
	drained   bool // the last read emptied the pipe
	carry     [utf8.UTFMax]byte
	nc        int  // carry[:nc] starts the next chunk
	done      bool // the pump has returned: nobody reads the stream again
}

// source prepares stream s, read from f, counted in counter.
func (r *relay) source(s Stream, f *os.File, counter *atomic.Int64) *source {
	src := &source{s: s, counter: counter}
	rc, err := f.SyscallConn()
	if err != nil {
		r.cfg.Log.Error("pump: raw conn", "stream", s, "err", err)
		return src
	}
	src.rc = rc
	return src
}

// exited tells the relay the process has been reaped: the pumps have drain
// longer to read what is left. Call it once, after start; it does not block.
func (r *relay) exited(drain time.Duration) {
	r.ring.processExited()
	r.drain = time.AfterFunc(drain, r.stopDraining)
	r.pending.Done()
}

// wait returns the job's end once the relay has reported it. Call it once.
func (r *relay) wait() Exit { return <-r.done }

// stopDraining passes both files' deadlines and ends the pumps' waits for
// room: the pumps end and the output still unread is dropped. Run after
// wait it is harmless: the pumps are done, and on closed files it does
// nothing.
func (r *relay) stopDraining() {
	close(r.drained)
	past := time.Unix(1, 0)
	for _, f := range []*os.File{r.cfg.Stderr, r.cfg.Stdout} {
		if err := f.SetDeadline(past); err != nil && !errors.Is(err, os.ErrClosed) {
			r.cfg.Log.Warn("end output drain", "err", err)
		}
	}
}

// finish runs once output is drained and the process reaped: it takes the
// end, reports it and puts it last in the ring.
func (r *relay) finish() Exit {
	r.drain.Stop()
	e := r.cfg.Report()
	r.cfg.Ended(r.ring.end(e))
	return e
}

// pump copies one output stream into the ring until EOF, a read error or
// the drain bound.
func (r *relay) pump(src *source) {
	defer func() {
		src.mu.Lock()
		src.done = true
		src.mu.Unlock()
	}()
	if src.rc == nil {
		return
	}
	for {
		src.mu.Lock()
		busy, drained := src.busy, src.drained
		src.mu.Unlock()
		if busy {
			r.awaitBacklog(src.rc, drained)
		}
		src.mu.Lock()
		rd := r.read(src.rc, src.streaming, src.carry[:src.nc])
		if rd.noRoom {
			src.mu.Unlock()
			if err := r.ring.waitRoom(r.drained); err != nil {
				r.cfg.Log.Warn("output left unread at the drain bound: no room in the ring", "stream", src.s)
				return
			}
			continue
		}
		r.took(src, rd)
		if rd.err != nil {
			if src.nc > 0 {
				r.ring.appendTail(src.s, bytes.Clone(src.carry[:src.nc]))
			}
			src.mu.Unlock()
			// ECONNRESET: the process exited with stdin it never read.
			if !errors.Is(rd.err, io.EOF) && !errors.Is(rd.err, os.ErrDeadlineExceeded) && !errors.Is(rd.err, syscall.ECONNRESET) {
				r.cfg.Log.Warn("read job output", "stream", src.s, "err", rd.err)
			}
			return
		}
		src.mu.Unlock()
	}
}

// took counts read rd of src and puts it into the ring; src.mu is held.
func (r *relay) took(src *source, rd readResult) {
	n := rd.n
	src.streaming = n >= smallChunkBytes
	src.busy = n >= minGrantBytes
	src.drained = rd.drained
	if n > 0 {
		src.counter.Add(int64(n))
		r.cfg.LastIO.Store(time.Now().UnixNano())
	}
	if rd.bp != nil {
		src.nc = r.keep(src.s, rd, src.carry[:])
	}
}

// fill reads what src's pipe holds now into the ring for a reader that has
// every event and would wait for the next (see ring.next), when src's pump
// waits for its readers (backlog): the reader then goes on with no handoff
// from the pump, as a pump that sent each chunk itself did. It reports
// whether it put an event in the ring. It never waits: what it cannot
// take at once (the pump reading, an empty pipe, no room in the ring, the
// stream's end or an error) it leaves to the pump.
func (r *relay) fill(src *source) bool {
	if !src.mu.TryLock() {
		return false
	}
	defer src.mu.Unlock()
	if src.done || !src.busy || src.rc == nil {
		return false
	}
	var rd readResult
	err := src.rc.Control(func(fd uintptr) { rd = r.readFd(fd, src.streaming, src.carry[:src.nc]) })
	if err != nil || rd.bp == nil {
		return false
	}
	if rd.n <= 0 || rd.rerr != nil {
		r.giveBack(&rd)
		return false
	}
	r.took(src, rd)
	return true
}

// awaitBacklog waits, before a streaming pump's next read, while the
// attached client has events it is not done with and the pipe holds less
// than a small chunk: see ring.backlog. When the last read drained the
// pipe it is not looked at before the first wait.
func (r *relay) awaitBacklog(rc syscall.RawConn, drained bool) {
	for look := !drained; ; look = true {
		wait, ok := r.ring.backlog()
		if !ok {
			return
		}
		if look {
			avail := -1
			if err := rc.Control(func(fd uintptr) { avail = readable(fd) }); err != nil || avail < 0 || avail >= smallChunkBytes {
				return
			}
		}
		select {
		case <-wait:
		case <-r.drained:
			return
		}
	}
}

// keep puts what read rd brought (after the held-back carry) into the
// ring, as the output limit allows, and returns how many bytes it holds
// back in carry for the next chunk. The event keeps the read's buffer
// when it fills half of it or more (streaming: no copy, no garbage), and
// a copy of its bytes in a buffer of its size otherwise (fitChunk: a
// small event never pins a big buffer); the buffer goes back to the pool
// once the ring and its readers are done with it.
func (r *relay) keep(s Stream, rd readResult, carry []byte) int {
	held := rd.carry
	total := held + r.allowed(rd.n)
	buf := (*rd.bp)[:total]
	if rd.drop {
		putChunk(rd.bp)
		return 0
	}
	t := 0
	if r.cfg.Text && total == held+rd.n { // a cut stream keeps nothing back
		t = IncompleteUTF8Tail(buf)
	}
	nc := copy(carry, buf[total-t:])
	switch data := buf[:total-t]; {
	case len(data) == 0:
		r.ring.unreserve(rd.grant)
		putChunk(rd.bp)
	case 2*len(data) >= len(*rd.bp):
		r.ring.commit(s, data, rd.bp, rd.grant)
	default:
		d, bp := fitChunk(data)
		r.ring.commit(s, d, bp, rd.grant)
		putChunk(rd.bp)
	}
	return nc
}

// fitChunk copies data into a buffer it fills at least half of, so that
// its event pins no bigger one: a pooled buffer (bp), or, for less than
// half the smallest class or past bigChunksOut, one of its own (bp nil).
func fitChunk(data []byte) (_ []byte, bp *[]byte) {
	if 2*len(data) >= minGrantBytes {
		bp := getChunk(len(data))
		if len(*bp) >= len(data) && 2*len(data) >= len(*bp) {
			return (*bp)[:copy(*bp, data)], bp
		}
		putChunk(bp)
	}
	return bytes.Clone(data), nil
}

// readResult is one read: the buffer (nil when nothing was read), the
// carry it starts with, n bytes read after it, the ring's grant, or why
// there was nothing to read.
type readResult struct {
	bp      *[]byte
	carry   int
	n       int
	grant   int
	drop    bool  // nobody reads the output: it is read and dropped
	noRoom  bool  // the ring had no room: wait for some
	drained bool  // the read took less than it had room for: the pipe was empty
	again   bool  // the pipe held nothing: no buffer, nothing reserved
	rerr    error // the read's own
	err     error
}

// read reserves room in the ring, then reads what the stream has, waiting
// for it in the poller; the carry bytes start the buffer. The caller puts
// the buffer back with putChunk.
func (r *relay) read(rc syscall.RawConn, big bool, carry []byte) readResult {
	var rd readResult
	err := rc.Read(func(fd uintptr) bool {
		rd = r.readFd(fd, big, carry)
		return !rd.again
	})
	if rd.noRoom {
		return rd
	}
	switch {
	case err != nil:
		rd.err = err
	case rd.rerr != nil:
		rd.err = rd.rerr
	case rd.n == 0:
		rd.err = io.EOF
	}
	if rd.err != nil {
		rd.n = max(rd.n, 0)
	}
	return rd
}

// readFd reserves room in the ring and reads what fd holds, without
// waiting: again when it holds nothing (the reservation given back, no
// buffer kept).
func (r *relay) readFd(fd uintptr, big bool, carry []byte) readResult {
	var rd readResult
	want := smallChunkBytes
	if big {
		want = bigChunkBytes
	}
	rd.grant, rd.drop = r.ring.tryReserve(want)
	if !rd.drop && rd.grant == 0 {
		rd.noRoom = true
		return rd
	}
	room := want
	if !rd.drop {
		room = rd.grant
	}
	// As much as the grant allows: a short read is moved to a buffer of
	// its size (see keep).
	rd.bp = getChunk(room)
	room = min(room, len(*rd.bp)) // past bigChunksOut a big read gets a small buffer
	rd.carry = copy(*rd.bp, carry)
	for {
		rd.n, rd.rerr = syscall.Read(int(fd), (*rd.bp)[rd.carry:room])
		if !errors.Is(rd.rerr, syscall.EINTR) {
			break
		}
	}
	rd.drained = rd.n < room-rd.carry
	if errors.Is(rd.rerr, syscall.EAGAIN) {
		r.giveBack(&rd)
		rd.bp = nil
		rd.again = true
	}
	return rd
}

// giveBack returns a read that took nothing: its buffer to the pool and
// its reservation to the ring.
func (r *relay) giveBack(rd *readResult) {
	putChunk(rd.bp)
	if !rd.drop {
		r.ring.unreserve(rd.grant)
	}
}

// allowed returns how many of the n bytes just counted may still go to the
// ring; passing the limit asks the job to stop.
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

// Output is read in chunks. A read takes a small buffer, so a quiet or chatty
// job costs little, unless its last read got a small buffer's worth or more:
// a streaming job reads big chunks, and makes fewer, larger messages (binary output is
// about a tenth faster). Buffers come in size classes, minGrantBytes doubling
// up to bigChunkBytes, and a read takes the smallest that holds what the pipe
// has within the ring's grant: its event then fills at least half of it and
// keeps it (see keep), so streaming output is neither copied nor made garbage.
// Buffers are pooled, and held by events until the ring and its readers are
// done with them. At most bigChunksOut buffers over smallChunkBytes are out at
// once, server-wide (past that a read gets a small one): streaming jobs behind
// slow clients hold at most that many beyond their small ones.
const (
	smallChunkBytes = 64 << 10
	bigChunkBytes   = 256 << 10
	bigChunksOut    = 64
	// chunkClasses are the buffer sizes: minGrantBytes<<0 … <<6, bigChunkBytes.
	chunkClasses = 7
)

var (
	chunkPools [chunkClasses]sync.Pool
	bigOut     atomic.Int64
)

// chunkClass is the class of the smallest buffer that holds n bytes, or of
// the biggest.
func chunkClass(n int) int {
	if n <= minGrantBytes {
		return 0
	}
	return min(bits.Len(uint((n-1)/minGrantBytes)), chunkClasses-1)
}

// getChunk returns a pooled buffer of the smallest class that holds n
// bytes (bigChunkBytes at most), or one of smallChunkBytes when it would be
// over smallChunkBytes and bigChunksOut such buffers are out: its length
// says which. Give it back with putChunk.
func getChunk(n int) *[]byte {
	c := chunkClass(n)
	if minGrantBytes<<c > smallChunkBytes {
		if bigOut.Add(1) > bigChunksOut {
			bigOut.Add(-1)
			c = chunkClass(smallChunkBytes)
		}
	}
	if bp, ok := chunkPools[c].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, minGrantBytes<<c)
	return &b
}

// putChunk gives back a buffer from getChunk.
func putChunk(bp *[]byte) {
	if len(*bp) > smallChunkBytes {
		bigOut.Add(-1)
	}
	chunkPools[chunkClass(len(*bp))].Put(bp)
}
