package spool

import (
	"bytes"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// directDir is a temporary directory for a test of the direct path; the
// test is skipped where its file system takes no direct I/O.
func directDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, "probe"), os.O_WRONLY|os.O_CREATE|syscall.O_DIRECT, 0o600)
	if directRefused(err) {
		t.Skipf("needs direct I/O in %s: %v", dir, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// directSpool is job JOB00000001's spool in a directDir, and the dir.
func directSpool(t *testing.T) (*Writer, string) {
	t.Helper()
	dir := directDir(t)
	w, err := Create(dir, "JOB00000001")
	if err != nil {
		t.Fatal(err)
	}
	return w, dir
}

// spoolText is what a test appends: events of sizes from one byte to a
// relay's big read, numbered, each byte telling where it is.
type spoolText struct {
	rng  *rand.Rand
	seq  uint64
	sent bytes.Buffer // all stdout appended, for the comparison
}

func (st *spoolText) append(t *testing.T, w *Writer, minBytes int) {
	t.Helper()
	for target := st.sent.Len() + minBytes; st.sent.Len() < target; {
		n := 1 + st.rng.IntN(256<<10)
		if st.rng.IntN(4) == 0 {
			n = 1 + st.rng.IntN(200) // a line now and then
		}
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(st.sent.Len() + i*31)
		}
		st.seq++
		if err := w.Append(KindStdout, st.seq, p); err != nil {
			t.Fatal(err)
		}
		st.sent.Write(p)
	}
}

// check reads the spool's stdout as a reader opening it now would, and
// compares it with what was appended.
func (st *spoolText) check(t *testing.T, path, when string) {
	t.Helper()
	got := crc32.NewIEEE()
	n := readAllCRC(t, path, got)
	if n != int64(st.sent.Len()) || got.Sum32() != crc32.ChecksumIEEE(st.sent.Bytes()) {
		t.Fatalf("%s: a reader read %d bytes (crc %x), want %d (crc %x)", when, n, got.Sum32(), st.sent.Len(), crc32.ChecksumIEEE(st.sent.Bytes()))
	}
}

// Ensure a spool on the direct path reads back byte-exact: after each
// Flush (as a reader of a running job's spool gets it), after an idle
// pause with no Flush, and after Close; that its windows are written
// around the page cache; and that it stops taking a slot when closed.
func TestSpool_Direct(t *testing.T) {
	t.Parallel()
	w, dir := directSpool(t)
	path := Path(dir, "JOB00000001")
	st := &spoolText{rng: rand.New(rand.NewPCG(1, 2))}
	st.append(t, w, directAfterBytes+3*directWindowBytes)
	w.mu.Lock()
	direct := w.d != nil
	w.mu.Unlock()
	if !direct {
		t.Fatalf("a spool of %d bytes is not on the direct path", st.sent.Len())
	}
	for i := range 6 { // flushes mid-window, then more windows after each
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if i == 0 { // the windows went around the page cache (read by no one yet)
			if r := residentBytesAt(t, path, directAfterBytes+directWindowBytes, directWindowBytes); r > directWindowBytes/4 {
				t.Errorf("%d bytes of a window written directly are in the page cache", r)
			}
		}
		st.check(t, path, "after a flush")
		st.append(t, w, (i+1)*directWindowBytes/2)
	}
	// A quiet writer's gathered bytes reach the file by themselves.
	st.append(t, w, 100)
	deadline := time.Now().Add(10 * time.Second)
	for {
		sf, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		n, err := sf.Stream(SelectStdout).Size()
		if cerr := sf.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == int64(st.sent.Len()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the last Append a reader sees %d bytes of %d: the gathered bytes of a quiet writer are not flushed", n, st.sent.Len())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st.check(t, path, "after a pause")
	st.append(t, w, 5*directWindowBytes)
	if err := w.Close(st.seq+1, &Exit{Reason: "exit"}); err != nil {
		t.Fatal(err)
	}
	st.check(t, path, "after Close")
}

// Ensure a file system that refuses a direct write (after open took
// O_DIRECT) costs the spool nothing: the writer goes back to the page
// cache, and every byte is there.
func TestSpool_DirectRefused(t *testing.T) {
	t.Parallel()
	w, dir := directSpool(t)
	w.testRefuseDirect = true
	st := &spoolText{rng: rand.New(rand.NewPCG(3, 4))}
	st.append(t, w, directAfterBytes+6*directWindowBytes)
	w.mu.Lock()
	direct, no := w.d != nil, w.noDirect
	w.mu.Unlock()
	if direct || !no {
		t.Fatalf("after refused direct writes the writer is on the direct path %v, gave it up %v", direct, no)
	}
	st.check(t, Path(dir, "JOB00000001"), "after the refusal")
	if err := w.Close(st.seq+1, &Exit{Reason: "exit"}); err != nil {
		t.Fatal(err)
	}
	st.check(t, Path(dir, "JOB00000001"), "after Close")
}

// Ensure an I/O error of the direct goroutine fails the spool at the next
// Append (the ring lets go of what Append took, so it must not take more),
// also where a refused direct write was already being served through the
// page cache: nothing after the hole is written, and Close reports it.
func TestSpool_DirectFailure(t *testing.T) {
	t.Parallel()
	for _, refused := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "after a refusal"}[refused], func(t *testing.T) {
			t.Parallel()
			w, dir := directSpool(t)
			st := &spoolText{rng: rand.New(rand.NewPCG(5, 6))}
			st.append(t, w, directAfterBytes+directWindowBytes)
			w.mu.Lock()
			d := w.d
			w.mu.Unlock()
			if d == nil {
				t.Fatal("the spool is not on the direct path")
			}
			d.mu.Lock()
			d.unsupported = refused
			d.err = errors.New("test: the disk failed")
			d.mu.Unlock()
			if err := w.Append(KindStdout, st.seq+1, []byte("one more\n")); err == nil {
				t.Fatal("an Append after the direct goroutine's failure succeeded")
			}
			fi, err := os.Stat(Path(dir, "JOB00000001"))
			if err != nil {
				t.Fatal(err)
			}
			d.writeWindow(window{buf: alignedBuffer(directWindowBytes), hi: directBlockBytes, off: fi.Size() + 10*directWindowBytes})
			if fi2, err := os.Stat(Path(dir, "JOB00000001")); err != nil || fi2.Size() != fi.Size() {
				t.Fatalf("a window after the hole was written: size %d → %v (%v)", fi.Size(), fi2.Size(), err)
			}
			if err := w.Close(st.seq+2, &Exit{Reason: "exit"}); err == nil {
				t.Fatal("Close of a failed spool returned nil")
			}
		})
	}
}
