package spool

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The direct path. A spool that streams (more than directAfterBytes) is
// written from then on with direct I/O where the file system takes it:
// the writer gathers its events in aligned windows of directWindowBytes
// and a goroutine of its own writes each full window straight to the disk
// (O_DIRECT), while the next fills. That skips the page cache: measured on
// the bench machine, 2 GiB cost the writer 0.35 s of CPU this way against
// 1.4–1.7 s through the page cache with the write-behind (the copy into
// fresh page-cache pages, the writeback's submission and the pages'
// dropping), and the spool's output is the job's output a second time.
//
// What is gathered but not yet written is in no file, so:
//
//	readers   Flush writes it, through the page cache, before a reader of a
//	          running job's spool opens the file (Supervisor.OpenSpool)
//	idle      the goroutine flushes it once the job has been quiet for
//	          directIdleFlush: a server killed then loses none of it
//	close     Close flushes it before its sync
//
// A flushed tail stays in the page cache, and the file's pages that hold
// it are never written around the cache: the next window writes up to the
// end of the tail's last page through the cache too, and only from there
// on directly. Linux keeps a cached page and a direct write of the same
// page coherent only when it can drop the page at that moment; a reader
// holding it could otherwise keep stale bytes.
//
// The windows take memory: at most maxDirectWriters spools use the direct
// path at once, each with directBuffers windows; the others go on through
// the page cache.

const (
	// directAfterBytes: a spool takes the direct path once it holds this
	// much. A job that writes little never takes a window's memory.
	directAfterBytes = writeBehindWindowBytes
	// directWindowBytes is one direct write: larger writes cost less CPU
	// per byte (measured: 0.98 s per 2 GiB in 256 KiB writes, 0.35 s in
	// 1 MiB ones, 0.26 s in 4 MiB ones).
	directWindowBytes = 1 << 20
	// directBuffers: one window being filled, two being written.
	directBuffers = 3
	// directIdleFlush: a spool whose job has written nothing for this
	// long has what it gathered flushed.
	directIdleFlush = 100 * time.Millisecond
	// directSyncWindows: after every this many windows (64 MiB) run syncs
	// the file, as the write-behind does, so that what a spool has written
	// is durable as it goes and Close's sync has little left to do.
	directSyncWindows = writeBehindSyncWindows * writeBehindWindowBytes / directWindowBytes
	// maxDirectWriters bounds the spools on the direct path at once
	// (directBuffers MiB each).
	maxDirectWriters = 16
)

// directBlockBytes is the alignment of a direct write's offset, length
// and memory, and the unit of the page-cache rule above: the page size (at
// least 4 KiB, a multiple of any disk's block). A window is a multiple of
// it.
var directBlockBytes = max(4<<10, os.Getpagesize())

// directSlots holds one token per spool on the direct path.
var directSlots = make(chan struct{}, maxDirectWriters)

// errNoDirect is openDirect's error where direct I/O is not to be had.
var errNoDirect = errors.New("direct I/O not supported")

// window is a full window handed to the direct goroutine: buf[lo:hi] is
// written at off+lo.
type window struct {
	buf    []byte
	lo, hi int
	off    int64
}

// directWriter is a Writer's direct path. Its fields are the Writer's,
// guarded by Writer.mu, except where said.
type directWriter struct {
	df       *os.File // the spool opened O_DIRECT
	f        *os.File // the Writer's: the page-cache path
	buf      []byte   // the window being filled
	base     int64    // the file offset of buf[0], aligned
	fill     int      // bytes gathered in buf
	cachedTo int64    // the end of what went through the page cache

	todo     chan window   // full windows, to run
	free     chan []byte   // written windows, back from run
	kick     chan struct{} // the writer gathered something and the idle clock was not running
	armed    atomic.Bool   // the idle clock runs (or a kick is on its way)
	gathered atomic.Uint64 // writes so far: run tells a quiet writer by it
	done     chan struct{} // closed when run has returned
	pending  sync.WaitGroup

	mu          sync.Mutex // guards err and unsupported, which run sets
	err         error
	unsupported bool // a direct write failed with EINVAL: back to the page cache

	testRefuse bool // tests: every direct write fails with EINVAL (after it is done)
}

// startDirect moves w to the direct path if it may: a slot is free and
// the file opens for direct I/O; w.mu is held. Otherwise w stays on the
// page-cache path, for now (no slot) or for good (w.noDirect).
func (w *Writer) startDirect() error {
	select {
	case directSlots <- struct{}{}:
	default:
		return nil
	}
	df, err := openDirect(w.path)
	if err == nil {
		err = w.stopWriteBehind() // its windows are written before any direct one
		if err != nil {
			err = errors.Join(err, df.Close())
		}
	}
	if err != nil {
		<-directSlots
		if errors.Is(err, errNoDirect) {
			w.noDirect = true
			return nil
		}
		return err
	}
	d := &directWriter{
		df: df, f: w.f,
		base: w.off &^ int64(directBlockBytes-1), cachedTo: w.off,
		todo: make(chan window, directBuffers-1), free: make(chan []byte, directBuffers),
		kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	d.testRefuse = w.testRefuseDirect
	d.fill = int(w.off - d.base) // buf[:fill] is in the file already: never written from buf
	d.buf = alignedBuffer(directWindowBytes)
	for range directBuffers - 1 {
		d.free <- alignedBuffer(directWindowBytes)
	}
	go d.run(w)
	w.d = d
	return nil
}

// stopDirect ends w's direct path, every byte gathered written; w.mu is
// held. The page cache takes the spool's writes from then on.
func (w *Writer) stopDirect() error {
	if w.d == nil {
		return nil
	}
	err := w.d.stop()
	w.d = nil
	return err
}

// alignedBuffer is n bytes whose start is directBlockBytes-aligned.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directBlockBytes)
	skip := -int(uintptr(unsafe.Pointer(&b[0]))) & (directBlockBytes - 1)
	return b[skip : skip+n : skip+n]
}

// write gathers p, and returns how much of it it took. It hands each full
// window to run, waiting for a written one to fill next. An error
// wrapping errNoDirect means the file system refused a direct write (that
// window, and those after it, went through the page cache instead): the
// writer must leave the direct path (stopDirect) and write the rest of p
// itself.
func (d *directWriter) write(p []byte) (int, error) {
	if err := d.failed(); err != nil { // at once: the ring lets go of what it spooled
		return 0, err
	}
	took := 0
	for took < len(p) {
		n := copy(d.buf[d.fill:], p[took:])
		d.fill += n
		took += n
		if d.fill < len(d.buf) {
			break
		}
		if err := d.failed(); err != nil {
			return took, err
		}
		// Up to the end of the cached tail's last page through the
		// cache, the rest of the window directly.
		lo := 0
		if d.cachedTo > d.base {
			lo = int(d.cachedTo - d.base)
			edge := min((lo+directBlockBytes-1)&^(directBlockBytes-1), d.fill)
			if _, err := d.f.WriteAt(d.buf[lo:edge], d.cachedTo); err != nil {
				return took, err
			}
			d.cachedTo, lo = d.base+int64(edge), edge
		}
		d.pending.Add(1)
		d.todo <- window{buf: d.buf, lo: lo, hi: d.fill, off: d.base}
		d.base += int64(d.fill)
		d.buf, d.fill = <-d.free, 0
	}
	d.gathered.Add(1)
	if !d.armed.Swap(true) { // the idle clock is not running: start it
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
	return took, nil
}

// failed is the first error of run's writes, if any.
func (d *directWriter) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil && d.unsupported {
		return fmt.Errorf("%w: a write was refused", errNoDirect)
	}
	return d.err
}

// flush waits for the windows handed to run, then writes what is gathered
// through the page cache. After it every byte gathered is in the file.
func (d *directWriter) flush() error {
	d.pending.Wait()
	return d.flushTail()
}

// flushTail writes what is gathered and not yet in the file through the
// page cache; no window may be pending.
func (d *directWriter) flushTail() error {
	if err := d.failed(); err != nil && !errors.Is(err, errNoDirect) {
		return err
	}
	lo := max(int(d.cachedTo-d.base), 0)
	if lo >= d.fill {
		return nil
	}
	if _, err := d.f.WriteAt(d.buf[lo:d.fill], d.base+int64(lo)); err != nil {
		return err
	}
	d.cachedTo = d.base + int64(d.fill)
	return nil
}

// stop flushes, ends run, waits for it, closes the direct file and frees
// the slot; it returns the first error of them.
func (d *directWriter) stop() error {
	err := d.flush()
	close(d.todo)
	<-d.done
	if cerr := d.df.Close(); cerr != nil && err == nil {
		err = cerr
	}
	<-directSlots
	return err
}

// run writes the windows write hands it, in order, and flushes a quiet
// writer's gathered bytes (directIdleFlush), until stop. w is the writer,
// whose lock run only tries for: a writer that holds it is not quiet.
func (d *directWriter) run(w *Writer) {
	defer close(d.done)
	idle := time.NewTimer(directIdleFlush)
	defer idle.Stop()
	seen := d.gathered.Load()
	written := 0
	for {
		select {
		case win, ok := <-d.todo:
			if !ok {
				return
			}
			d.writeWindow(win)
			if written++; written%directSyncWindows == 0 && d.failed() == nil {
				if err := d.f.Sync(); err != nil {
					d.setErr(fmt.Errorf("sync: %w", err))
				}
			}
			d.free <- win.buf
			d.pending.Done()
		case <-d.kick:
			seen = d.gathered.Load()
			idle.Reset(directIdleFlush)
		case <-idle.C:
			if now := d.gathered.Load(); now != seen || len(d.todo) > 0 || !w.mu.TryLock() {
				seen = now
				idle.Reset(directIdleFlush) // not quiet yet
				continue
			}
			if w.d == d && len(d.todo) == 0 { // not stopped meanwhile; no window waits (write holds w.mu to hand one over)
				if err := d.flushTail(); err != nil {
					d.setErr(err)
				}
			}
			w.mu.Unlock()
			d.armed.Store(false)
			if d.gathered.Load() != seen { // gathered since the look above: it kicked no one
				d.armed.Store(true)
				seen = d.gathered.Load()
				idle.Reset(directIdleFlush)
			}
		}
	}
}

// writeWindow writes one window directly, or through the page cache where
// a direct write is refused.
func (d *directWriter) writeWindow(win window) {
	p, off := win.buf[win.lo:win.hi], win.off+int64(win.lo)
	switch err := d.failed(); {
	case err == nil:
		_, werr := d.df.WriteAt(p, off)
		if d.testRefuse {
			werr = fmt.Errorf("test: %w", syscall.EINVAL)
		}
		if werr == nil {
			return
		}
		if !directRefused(werr) {
			d.setErr(werr)
			return
		}
		d.mu.Lock()
		d.unsupported = true
		d.mu.Unlock()
	case !errors.Is(err, errNoDirect):
		return // the spool failed already: nothing after the hole is written
	}
	if _, err := d.f.WriteAt(p, off); err != nil {
		d.setErr(err)
	}
}

func (d *directWriter) setErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
	}
}
