package spool

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// writeBehindLagWindows bounds how many started windows may wait for the
// write-behind goroutine: with the window being filled and the one being
// waited for, a spooling job keeps at most writeBehindLagWindows+2
// windows dirty or cached.
const writeBehindLagWindows = 2

// writeBehindSyncWindows: after every this many windows (64 MiB) the
// write-behind goroutine also syncs the file. What a spool has written is
// then durable as it goes, up to its last few windows, and Close's sync,
// which the job's final record and its client's exit event wait for, has
// little left to do: measured on the bench machine, the closing sync of
// a 2 GiB spool took 0.4–0.9 s with no sync before it, and 40 ms with one
// every 64 MiB (a virtual disk's cache flush writes everything the host
// holds for it).
const writeBehindSyncWindows = 8

// writeBehinder finishes a spool's write-behind windows (waits for each
// to be written, then drops it from the page cache) on a goroutine of its
// own, so that the writer, and the job's output behind it, does not wait
// for the disk while the disk keeps up (at most writeBehindLagWindows
// behind). The writer owns it: it is made by Create and stopped (and
// waited for) by Close.
type writeBehinder struct {
	f    *os.File
	todo chan int64    // started windows, by offset, to finish in order
	done chan struct{} // closed when run has returned

	mu          sync.Mutex
	err         error // the first I/O error of a window's writeback
	unsupported bool  // the file system does not take the hints
}

func newWriteBehinder(f *os.File) *writeBehinder {
	b := &writeBehinder{f: f, todo: make(chan int64, writeBehindLagWindows), done: make(chan struct{})}
	go b.run()
	return b
}

// run finishes the windows push hands it, until stop.
func (b *writeBehinder) run() {
	defer close(b.done)
	for off := range b.todo {
		b.mu.Lock()
		skip := b.err != nil || b.unsupported
		b.mu.Unlock()
		if skip {
			continue
		}
		err := finishWriteBehind(b.f, off, writeBehindWindowBytes)
		if err == nil && (off/writeBehindWindowBytes+1)%writeBehindSyncWindows == 0 {
			if serr := b.f.Sync(); serr != nil {
				err = fmt.Errorf("sync: %w", serr)
			}
		}
		b.mu.Lock()
		switch {
		case errors.Is(err, errNoWriteBehind):
			b.unsupported = true
		case err != nil:
			b.err = fmt.Errorf("write back: %w", err)
		}
		b.mu.Unlock()
	}
}

// push starts the writeback of the window at off and hands it to run,
// waiting while writeBehindLagWindows windows already wait. An error
// wrapping errNoWriteBehind means the hints are not taken here (stop the
// write-behind and go on); any other is an I/O error, and the spool is
// not whole.
func (b *writeBehinder) push(off int64) error {
	b.mu.Lock()
	err, unsupported := b.err, b.unsupported
	b.mu.Unlock()
	switch {
	case err != nil:
		return err
	case unsupported:
		return errNoWriteBehind
	}
	if err := startWriteBehind(b.f, off, writeBehindWindowBytes); err != nil {
		if errors.Is(err, errNoWriteBehind) {
			return err
		}
		return fmt.Errorf("write back: %w", err)
	}
	b.todo <- off
	return nil
}

// stop waits for the windows handed over, ends run, and returns the
// first I/O error of their writeback.
func (b *writeBehinder) stop() error {
	close(b.todo)
	<-b.done
	return b.err
}
