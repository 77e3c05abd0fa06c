// Package spool keeps a job's output after the job ends (JES's SYSOUT):
// one append-only file per job under the server's spool directory
// (DATA_DIR/spool), named after the job (JOBID.spool), holding its output
// events in the order they were taken, each with its stream and sequence
// number, and last its exit.
//
// File format, version 1 (all integers big-endian):
//
//	header   "chimirror-spool 1\n"                     (Magic, 18 bytes)
//	event    kind   1 byte   'o' stdout, 'e' stderr, 'x' exit
//	         seq    8 bytes  the event's seq, given by the writer's caller:
//	                         strictly increasing in file order
//	         len    4 bytes  payload length, at most MaxPayloadBytes
//	         payload         stdout or stderr bytes as read from the job's
//	                         pipe; for 'x', the Exit as JSON
//
// A job's spool numbers its events with the seqs of its replay ring (the
// seqs chimirror.v1 clients see), one spool event per ring event: 1, 2,
// 3, … with no gap, the exit event carrying the end's seq. Readers may
// therefore ask for the events after a seq a client saw (File.EventsAfter).
//
// The stream of one kind is the concatenation of its payloads, so stdout
// alone (or stderr, or both interleaved as they were taken) is returned
// byte-exact. An exit event, when present, is the last event; a file
// without one belongs to a job that is still running, that the server
// lost (killed while the job ran), or whose spool failed. A reader takes
// only the complete events within the file's size when it opened it: a
// writer that is still appending, or a torn last event after a crash, is
// never half read.
//
// A Writer is safe for concurrent use, but its caller orders its events:
// each Append must carry a seq above the last one's.
package spool

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Magic opens every spool file.
const Magic = "chimirror-spool 1\n"

// Kind is the type of one event.
type Kind byte

const (
	KindStdout Kind = 'o'
	KindStderr Kind = 'e'
	KindExit   Kind = 'x'
)

// eventHeaderBytes is kind, seq and len.
const eventHeaderBytes = 1 + 8 + 4

// MaxPayloadBytes bounds one event's payload: Append refuses a longer one
// (a job's ring events are at most 256 KiB, so each fits one spool event
// and keeps its seq), and a reader takes a longer length for a corrupt
// file.
const MaxPayloadBytes = 1 << 20

// Ext is the spool file's extension.
const Ext = ".spool"

// Path is the spool file of job id in dir.
func Path(dir, id string) string { return filepath.Join(dir, id+Ext) }

// Exit is the end of a job as its spool keeps it (the exit event's JSON).
type Exit struct {
	Code   int    `json:"code"`             // the exit code, or 128+signal
	Signal string `json:"signal,omitempty"` // "KILL" when a signal ended it
	Reason string `json:"reason"`           // the supervisor's reason: exit, signal, wall-time, …
	Detail string `json:"detail,omitempty"`
}

var (
	// ErrNotSpool is returned for a file that does not start with Magic.
	ErrNotSpool = errors.New("not a chimirror spool file")
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("spool closed")
)

// Writer appends one job's events to its spool file.
type Writer struct {
	path string

	mu     sync.Mutex
	f      *os.File
	seq    uint64
	err    error // the first failed write: every later Append returns it
	closed bool
	small  [eventHeaderBytes + smallEventBytes]byte // header and a small payload, written at once

	off    int64          // bytes appended: in the file, or gathered by d
	behind int64          // the end of the windows already handed to wb
	wb     *writeBehinder // nil once its hints are not taken here, or the spool is closed

	d         *directWriter // the direct path (direct.go); nil on the page-cache path
	noDirect  bool          // the file system takes no direct I/O
	directTry int64         // the offset past which the direct path is tried next

	testRefuseDirect bool // tests: the file system refuses direct writes
}

// smallEventBytes is the payload an event written with one write(2)
// carries at most; a longer one goes out as its header and its payload.
const smallEventBytes = 4 << 10

// Create makes job id's spool file in dir (made if missing, mode 0700) and
// writes its header; the file must not exist (a job ID is never reused).
// The directory entry is synced: after a crash, the file is found.
func Create(dir, id string) (_ *Writer, retErr error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool dir: %w", err)
	}
	path := Path(dir, id)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create spool: %w", err)
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, f.Close(), os.Remove(path))
		}
	}()
	if _, err := f.WriteString(Magic); err != nil {
		return nil, fmt.Errorf("write spool header %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return &Writer{path: path, f: f, off: int64(len(Magic)), wb: newWriteBehinder(f), directTry: directAfterBytes}, nil
}

// syncDir makes dir's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync spool dir: %w", err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync spool dir %s: %w", dir, errors.Join(err, d.Close()))
	}
	return d.Close()
}

// Path is the writer's file.
func (w *Writer) Path() string { return w.path }

// Append writes p as one event of kind k numbered seq, which must be above
// the last event's (and p at most MaxPayloadBytes). The bytes are in the
// file (the page cache) when it returns, where readers (Open) see them,
// except on the direct path (direct.go), which may gather up to a few
// windows first: Flush writes them. Close makes every byte durable. After
// a failed or refused Append every Append returns that error: a spool
// never has a hole.
func (w *Writer) Append(k Kind, seq uint64, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.appendLocked(k, seq, p)
}

// appendLocked is Append; w.mu is held.
func (w *Writer) appendLocked(k Kind, seq uint64, p []byte) error {
	switch {
	case w.closed:
		return ErrClosed
	case w.err != nil:
		return w.err
	case seq <= w.seq:
		w.err = fmt.Errorf("spool %s: event seq %d after %d: seqs must increase", w.path, seq, w.seq)
	case len(p) > MaxPayloadBytes:
		w.err = fmt.Errorf("spool %s: event %d of %d bytes: more than MaxPayloadBytes", w.path, seq, len(p))
	default:
		if err := w.event(k, seq, p); err != nil {
			w.err = fmt.Errorf("write spool %s: %w", w.path, err)
		}
	}
	return w.err
}

// event writes one event; w.mu is held.
func (w *Writer) event(k Kind, seq uint64, p []byte) error {
	h := w.small[:eventHeaderBytes]
	h[0] = byte(k)
	binary.BigEndian.PutUint64(h[1:9], seq)
	binary.BigEndian.PutUint32(h[9:13], uint32(len(p)))
	if len(p) <= smallEventBytes {
		n := copy(w.small[eventHeaderBytes:], p)
		if err := w.writeOut(w.small[:eventHeaderBytes+n]); err != nil {
			return err
		}
	} else {
		if err := w.writeOut(h); err != nil {
			return err
		}
		if err := w.writeOut(p); err != nil {
			return err
		}
	}
	w.seq = seq
	for w.wb != nil && w.off-w.behind >= writeBehindWindowBytes {
		err := w.wb.push(w.behind)
		if errors.Is(err, errNoWriteBehind) { // the hints are not taken here: the page cache keeps it
			return w.stopWriteBehind()
		}
		if err != nil {
			return err
		}
		w.behind += writeBehindWindowBytes
	}
	if w.d == nil && !w.noDirect && w.off >= w.directTry {
		w.directTry = w.off + directAfterBytes // no slot free: try again later
		if err := w.startDirect(); err != nil {
			return err
		}
	}
	return nil
}

// writeOut appends b, on the direct path or through the page cache; w.mu
// is held.
func (w *Writer) writeOut(b []byte) error {
	if w.d != nil {
		n, err := w.d.write(b)
		w.off += int64(n)
		b = b[n:]
		if err == nil {
			return nil
		}
		if !errors.Is(err, errNoDirect) {
			return err
		}
		if err := w.stopDirect(); err != nil { // the file system refused a direct write
			return err
		}
		w.noDirect = true
		if w.wb == nil { // written behind again, from here on
			w.wb, w.behind = newWriteBehinder(w.f), w.off
		}
	}
	if _, err := w.f.WriteAt(b, w.off); err != nil {
		return err
	}
	w.off += int64(len(b))
	return nil
}

// Flush writes what the direct path has gathered (see Append): after it,
// a reader that opens the file sees every event appended before it, up to
// the spool's failure if it failed. It returns the first error of the
// spool's life, as Close does (a flush that fails fails the spool); a
// closed spool has nothing to flush.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.err != nil || w.d == nil {
		return w.err
	}
	if err := w.d.flush(); err != nil {
		w.err = fmt.Errorf("write spool %s: %w", w.path, err)
	}
	return w.err
}

// stopWriteBehind ends the write-behind, if it runs, and returns the
// first I/O error of its windows' writeback; w.mu is held.
func (w *Writer) stopWriteBehind() error {
	if w.wb == nil {
		return nil
	}
	err := w.wb.stop()
	w.wb = nil
	return err
}

// errNoWriteBehind is writeBehind's error where the file system does not
// take its hints (or, off Linux, there are none).
var errNoWriteBehind = errors.New("write-behind not supported")

// writeBehindWindowBytes is the write-behind's window. A spool is written
// once and read rarely, so the page cache holds little of it: as each
// window fills, the writer starts writing it to disk, and the write-behind
// goroutine (writeBehinder) drops it from the cache once it is written
// (Linux only). A spooling job thus keeps at most writeBehindLagWindows+2
// windows (32 MiB) dirty or cached, however much it writes: its output
// neither fills the host's memory with dirty pages (whose writeback would
// stall every other writer of the disk, the ledger's fsyncs among them)
// nor evicts its neighbours' cache, and the memory it writes through is
// the same few pages over and over, which costs the writer far less than
// fresh page-cache pages (measured: 0.4 s of system time for 2 GiB against
// 2.5–4.5 s without it, on the bench machine). The cost is that a reader
// more than a few windows behind the writer reads from disk.
const writeBehindWindowBytes = 8 << 20

// Close appends the exit event numbered seq (none when e is nil; seq is
// then unused), syncs the file to disk and closes it; it returns the first
// error of the spool's life. Once it returns nil, every event is durable.
// Calling it again returns nil.
func (w *Writer) Close(seq uint64, e *Exit) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	err := w.err
	if e != nil && err == nil {
		b, merr := json.Marshal(e)
		if merr != nil { // an Exit always marshals
			panic(merr)
		}
		err = w.appendLocked(KindExit, seq, b)
	}
	w.closed = true
	if derr := w.stopDirect(); derr != nil && err == nil {
		err = fmt.Errorf("write spool %s: %w", w.path, derr)
	}
	if werr := w.stopWriteBehind(); werr != nil && err == nil {
		err = fmt.Errorf("write spool %s: %w", w.path, werr)
	}
	if serr := w.f.Sync(); serr != nil && err == nil {
		err = fmt.Errorf("sync spool %s: %w", w.path, serr)
	}
	if cerr := w.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close spool %s: %w", w.path, cerr)
	}
	if err == nil && testSynced != nil {
		testSynced(w.path)
	}
	return err
}

// testSynced, when set (by tests), is called once a spool is durable.
var testSynced func(path string)

// SetTestSynced sets a function called as each Close's sync completes, for
// tests of what may happen only after a spool is durable; nil removes it.
// It is not safe to call while spools are being closed.
func SetTestSynced(f func(path string)) { testSynced = f }

// Event is one event as a reader sees it (File.EventsAfter). Payload is
// valid until the next event is read: copy it to keep it.
type Event struct {
	Kind    Kind
	Seq     uint64
	Payload []byte // the output; for the exit event, its JSON
	Exit    *Exit  // the exit event's, decoded; nil for output
}

// readHeader reads and checks the file's magic.
func readHeader(r io.Reader) error {
	var b [len(Magic)]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrNotSpool
		}
		return err
	}
	if string(b[:]) != Magic {
		return ErrNotSpool
	}
	return nil
}

// parseHeader decodes an event header.
func parseHeader(h []byte) (Kind, uint64, int, error) {
	k, seq, n := Kind(h[0]), binary.BigEndian.Uint64(h[1:9]), binary.BigEndian.Uint32(h[9:13])
	if k != KindStdout && k != KindStderr && k != KindExit || n > MaxPayloadBytes {
		return 0, 0, 0, fmt.Errorf("%w: bad event header (kind %q, %d bytes)", ErrNotSpool, k, n)
	}
	return k, seq, int(n), nil
}
