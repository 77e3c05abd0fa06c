package spool

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"time"
)

// Select is which streams a StreamReader returns.
type Select uint8

const (
	SelectStdout Select = 1 << iota
	SelectStderr
	SelectAll = SelectStdout | SelectStderr // both, interleaved in event order
)

// ParseSelect reads a stream name: "stdout", "stderr" or "all".
func ParseSelect(s string) (Select, error) {
	switch s {
	case "stdout":
		return SelectStdout, nil
	case "stderr":
		return SelectStderr, nil
	case "all":
		return SelectAll, nil
	}
	return 0, fmt.Errorf("bad stream %q: stdout, stderr or all", s)
}

func (sel Select) has(k Kind) bool {
	return k == KindStdout && sel&SelectStdout != 0 || k == KindStderr && sel&SelectStderr != 0
}

// File is a spool opened for reading: a snapshot of the complete events
// within the file's size when it was opened (a writer may still be
// appending: open the file again to see what it appended since). It is
// not safe for concurrent use.
type File struct {
	f       *os.File
	size    int64 // of the file at Open
	modTime time.Time
}

// Open opens a spool file for reading.
func Open(path string) (_ *File, retErr error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, f.Close())
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	if err := readHeader(io.NewSectionReader(f, 0, st.Size())); err != nil {
		return nil, fmt.Errorf("open spool %s: %w", path, err)
	}
	return &File{f: f, size: st.Size(), modTime: st.ModTime()}, nil
}

// Close closes the file.
func (sf *File) Close() error { return sf.f.Close() }

// ModTime is the file's modification time at Open: its last event's.
func (sf *File) ModTime() time.Time { return sf.modTime }

// Size is the file's size at Open, header and framing included.
func (sf *File) Size() int64 { return sf.size }

// readBufBytes is a scanner's buffer.
const readBufBytes = 64 << 10

// scanner reads the events of a snapshot in order. It holds one buffer of
// readBufBytes and one payload at most.
type scanner struct {
	f    *os.File
	br   *bufio.Reader
	off  int64 // file offset of the next event
	end  int64 // the snapshot's size
	hdr  [eventHeaderBytes]byte
	body []byte // payload's buffer
}

func (sf *File) scanner() *scanner { return newScanner(sf.f, int64(len(Magic)), sf.size, nil) }

// newScanner scans f's events from off (an event's start) to end, with
// br's buffer if br is not nil.
func newScanner(f *os.File, off, end int64, br *bufio.Reader) *scanner {
	sr := io.NewSectionReader(f, off, end-off)
	if br == nil {
		br = bufio.NewReaderSize(sr, readBufBytes)
	} else {
		br.Reset(sr)
	}
	return &scanner{f: f, br: br, off: off, end: end}
}

// next reads the next complete event's header; io.EOF at the end of the
// complete events (a torn last one included). The payload (n bytes) is
// then read with payload or skipped with skip, before next is called
// again.
func (s *scanner) next() (Kind, uint64, int, error) {
	if s.end-s.off < eventHeaderBytes {
		return 0, 0, 0, io.EOF
	}
	if _, err := io.ReadFull(s.br, s.hdr[:]); err != nil {
		return 0, 0, 0, err
	}
	k, seq, n, err := parseHeader(s.hdr[:])
	if err != nil {
		return 0, 0, 0, fmt.Errorf("at offset %d: %w", s.off, err)
	}
	if s.end-s.off-eventHeaderBytes < int64(n) {
		return 0, 0, 0, io.EOF
	}
	s.off += eventHeaderBytes + int64(n)
	return k, seq, n, nil
}

// skip skips the n bytes that end the current event's payload: what the
// buffer holds is discarded, a longer payload is seeked over unread, and
// the next header is then read alone (headerFirst), not with a buffer's
// worth of the payload after it: a reader skipping to a late seq reads
// each header it passes, 13 bytes, and nothing more.
func (s *scanner) skip(n int) error {
	if n <= s.br.Buffered() {
		_, err := s.br.Discard(n)
		return err
	}
	s.br.Reset(&headerFirst{r: io.NewSectionReader(s.f, s.off, s.end-s.off), first: true})
	return nil
}

// headerFirst is a reader whose first read is at most one event header.
type headerFirst struct {
	r     io.Reader
	first bool
}

func (h *headerFirst) Read(p []byte) (int, error) {
	if h.first {
		h.first = false
		p = p[:min(len(p), eventHeaderBytes)]
	}
	return h.r.Read(p)
}

// payload reads the current event's payload of n bytes into the
// scanner's buffer; it is valid until the next payload.
func (s *scanner) payload(n int) ([]byte, error) {
	if cap(s.body) < n {
		s.body = make([]byte, n)
	}
	body := s.body[:n]
	if _, err := io.ReadFull(s.br, body); err != nil {
		return nil, fmt.Errorf("read spool event payload at offset %d: %w", s.off-int64(n), err)
	}
	return body, nil
}

// decodeExit decodes an exit event's payload.
func decodeExit(body []byte) (*Exit, error) {
	var e Exit
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("spool exit event: %w", err)
	}
	return &e, nil
}

// Info sums up a spool.
type Info struct {
	Events      int    // complete events
	LastSeq     uint64 // of the last complete event; 0: none
	StdoutBytes int64
	StderrBytes int64
	Exit        *Exit // the exit event's; nil: still running, or lost
	// ValidBytes is where the complete events end; less than the size
	// when the last event is torn (a crash mid-write).
	ValidBytes int64
}

// Info reads the whole snapshot's headers (and the exit event).
func (sf *File) Info() (Info, error) {
	s := sf.scanner()
	in := Info{ValidBytes: s.off}
	for {
		k, seq, n, err := s.next()
		if errors.Is(err, io.EOF) {
			return in, nil
		}
		if err != nil {
			return in, err
		}
		switch k {
		case KindStdout:
			in.StdoutBytes += int64(n)
		case KindStderr:
			in.StderrBytes += int64(n)
		}
		if k == KindExit {
			body, err := s.payload(n)
			if err != nil {
				return in, err
			}
			if in.Exit, err = decodeExit(body); err != nil {
				return in, err
			}
		} else if err := s.skip(n); err != nil {
			return in, err
		}
		in.Events, in.LastSeq, in.ValidBytes = in.Events+1, seq, s.off
	}
}

// Stream returns the bytes of the selected streams, concatenated in event
// order, as an io.ReadSeeker (for http.ServeContent). Its memory is one
// read buffer: a seek backwards scans again from the start, and the size
// (Seek to the end) takes one scan of the headers.
func (sf *File) Stream(sel Select) *StreamReader {
	return &StreamReader{sf: sf, sel: sel, size: -1}
}

// StreamReader reads the selected streams of a File; see File.Stream.
type StreamReader struct {
	sf     *File
	sel    Select
	s      *scanner
	pos    int64 // stream offset the scanner is at
	rem    int   // payload bytes of the current event not yet read
	target int64 // stream offset the next Read starts at
	size   int64 // -1: not yet known
}

// Size is the length of the selected streams.
func (r *StreamReader) Size() (int64, error) {
	if r.size >= 0 {
		return r.size, nil
	}
	s := r.sf.scanner()
	var size int64
	for {
		k, _, n, err := s.next()
		if errors.Is(err, io.EOF) {
			r.size = size
			return size, nil
		}
		if err != nil {
			return 0, err
		}
		if r.sel.has(k) {
			size += int64(n)
		}
		if err := s.skip(n); err != nil {
			return 0, err
		}
	}
}

// Seek sets where the next Read starts.
func (r *StreamReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.target
	case io.SeekEnd:
		size, err := r.Size()
		if err != nil {
			return 0, err
		}
		offset += size
	default:
		return 0, errors.New("spool: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("spool: negative position")
	}
	r.target = offset
	return offset, nil
}

// Read reads the selected streams from the position Seek set.
func (r *StreamReader) Read(p []byte) (int, error) {
	if r.s == nil || r.target < r.pos {
		r.s, r.pos, r.rem = r.sf.scanner(), 0, 0
	}
	for r.pos < r.target { // skip forward to target
		if r.rem == 0 {
			if err := r.advance(); err != nil {
				return 0, err
			}
			continue
		}
		n := int(min(int64(r.rem), r.target-r.pos))
		var err error
		if n == r.rem {
			err = r.s.skip(n)
		} else {
			_, err = r.s.br.Discard(n)
		}
		if err != nil {
			return 0, err
		}
		r.rem -= n
		r.pos += int64(n)
	}
	for r.rem == 0 {
		if err := r.advance(); err != nil {
			return 0, err
		}
	}
	n, err := r.s.br.Read(p[:min(len(p), r.rem)])
	r.rem -= n
	r.pos += int64(n)
	r.target = r.pos
	return n, err
}

// advance moves to the next event of the selected streams.
func (r *StreamReader) advance() error {
	for {
		k, _, n, err := r.s.next()
		if err != nil {
			return err
		}
		if r.sel.has(k) {
			r.rem = n
			return nil
		}
		if err := r.s.skip(n); err != nil {
			return err
		}
	}
}

// Tail follows a spool that a job may still be appending to: each Read
// returns the events completed since the last. It holds one read buffer
// and one payload at most.
type Tail struct {
	sf   *File
	sel  Select
	s    *scanner
	exit *Exit
}

// Tail follows the selected streams of the spool, from its start.
func (sf *File) Tail(sel Select) *Tail {
	return &Tail{sf: sf, sel: sel, s: newScanner(sf.f, int64(len(Magic)), int64(len(Magic)), nil)}
}

// Exit is the exit event's, once Read has met it (nil before, and for a
// job that was lost).
func (t *Tail) Exit() *Exit { return t.exit }

// Read writes the selected payloads of the events completed since the
// last call to w, and returns how many bytes it wrote. Once the exit event
// has been read, the spool is complete and Read returns 0, nil.
func (t *Tail) Read(w io.Writer) (int64, error) {
	if t.exit != nil {
		return 0, nil
	}
	st, err := t.sf.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("follow spool: %w", err)
	}
	if st.Size() <= t.s.off {
		return 0, nil
	}
	s := newScanner(t.sf.f, t.s.off, st.Size(), t.s.br)
	s.body = t.s.body
	t.s = s
	var wrote int64
	for {
		k, _, n, err := s.next()
		if errors.Is(err, io.EOF) {
			return wrote, nil
		}
		if err != nil {
			return wrote, err
		}
		if k != KindExit && !t.sel.has(k) {
			if err := s.skip(n); err != nil {
				return wrote, err
			}
			continue
		}
		body, err := s.payload(n)
		if err != nil {
			return wrote, err
		}
		if k == KindExit {
			t.exit, err = decodeExit(body)
			return wrote, err
		}
		m, err := w.Write(body)
		wrote += int64(m)
		if err != nil {
			return wrote, err
		}
	}
}

// EventsAfter returns the snapshot's events with seq > after, in order
// (file order is seq order), the exit event included: it is the last,
// with Exit decoded. after 0 is every event. Each event's Payload is
// valid only until the loop's next iteration. An error (a corrupt file,
// a failed read) is yielded once, with a zero Event, and ends the
// sequence.
//
// In a job's spool the seqs are those of its ring (supervisor.Event.Seq,
// chimirror.v1's "seq"), consecutive from 1: a reader that holds every
// event up to after gets exactly the rest, as far as the snapshot goes.
// The snapshot is the file at Open: for a job still running, the events
// it had spooled then; every event its ring has evicted is spooled before
// the eviction, so a File opened after a client learnt of a gap holds
// the gap. A snapshot without the exit event is of a running job, a job
// lost with its server, or one whose spool failed.
//
// Skipped events cost a read of their header each (their payloads are
// seeked over); the iteration holds one read buffer and one payload.
func (sf *File) EventsAfter(after uint64) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		s := sf.scanner()
		for {
			k, seq, n, err := s.next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err == nil && seq <= after {
				if err = s.skip(n); err == nil {
					continue
				}
			}
			ev := Event{Kind: k, Seq: seq}
			if err == nil {
				ev.Payload, err = s.payload(n)
			}
			if err == nil && k == KindExit {
				ev.Exit, err = decodeExit(ev.Payload)
			}
			if err != nil {
				yield(Event{}, fmt.Errorf("read spool events after %d: %w", after, err))
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}
