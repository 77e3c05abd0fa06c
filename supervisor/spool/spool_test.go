package spool

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// Ensure the streams read back byte-exact, each alone and both in event
// order, binary and empty chunks and a chunk of MaxPayloadBytes
// included, from any offset; events keep their seqs and the exit is last.
func TestSpool_RoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w, err := Create(dir, "JOB00000001")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var out, errs, all bytes.Buffer
	for i := range 200 {
		n := rng.IntN(9000)
		if i == 50 {
			n = MaxPayloadBytes
		}
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		k := KindStdout
		if rng.IntN(3) == 0 {
			k = KindStderr
			errs.Write(p)
		} else {
			out.Write(p)
		}
		all.Write(p)
		if err := w.Append(k, uint64(i+1), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(201, &Exit{Code: 3, Reason: "exit"}); err != nil {
		t.Fatal(err)
	}
	sf, err := Open(Path(dir, "JOB00000001"))
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	in, err := sf.Info()
	if err != nil {
		t.Fatal(err)
	}
	if in.Exit == nil || in.Exit.Code != 3 || in.LastSeq != uint64(in.Events) || in.Events != 201 || in.ValidBytes != sf.Size() {
		t.Fatalf("info %+v: want 200 output events and the exit, numbered from 1", in)
	}
	for _, tc := range []struct {
		name string
		sel  Select
		want []byte
	}{{"stdout", SelectStdout, out.Bytes()}, {"stderr", SelectStderr, errs.Bytes()}, {"all", SelectAll, all.Bytes()}} {
		t.Run(tc.name, func(t *testing.T) {
			r := sf.Stream(tc.sel)
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(tc.want))
			}
			if size, err := r.Seek(0, io.SeekEnd); err != nil || size != int64(len(tc.want)) {
				t.Fatalf("size %d, %v", size, err)
			}
			for _, off := range []int64{0, 1, int64(len(tc.want)) / 2, int64(len(tc.want)) - 1, 7} { // backwards too
				if _, err := r.Seek(off, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, min(5000, int64(len(tc.want))-off))
				if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, tc.want[off:off+int64(len(got))]) {
					t.Fatalf("at %d: %v", off, err)
				}
			}
		})
	}
}

// Ensure a torn last event (a crash mid-write) is never read, and Seal
// cuts it off; a follower sees only complete events.
func TestSpool_TornTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w, err := Create(dir, "JOB00000002")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(KindStdout, 1, []byte("whole")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(0, nil); err != nil { // lost: no exit
		t.Fatal(err)
	}
	path := Path(dir, "JOB00000002")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{'o', 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 9, 'p', 'a'}); err != nil { // 9 bytes announced, 2 written
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"torn", "sealed"} {
		t.Run(step, func(t *testing.T) {
			if step == "sealed" {
				in, err := Seal(path)
				if err != nil || in.Exit != nil || in.StdoutBytes != 5 {
					t.Fatalf("seal: %+v, %v", in, err)
				}
				if st, err := os.Stat(path); err != nil || st.Size() != in.ValidBytes {
					t.Fatalf("sealed size %v, want %d", st, in.ValidBytes)
				}
			}
			sf, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer sf.Close()
			got, err := io.ReadAll(sf.Stream(SelectAll))
			if err != nil || string(got) != "whole" {
				t.Fatalf("read %q, %v", got, err)
			}
			var b bytes.Buffer
			tl := sf.Tail(SelectStdout)
			if _, err := tl.Read(&b); err != nil || b.String() != "whole" || tl.Exit() != nil {
				t.Fatalf("tail %q, %v", b.String(), err)
			}
		})
	}
	if _, err := Open(path + ".nope"); err == nil {
		t.Fatal("opened a missing spool")
	}
}

// Ensure EventsAfter returns exactly the events with seq > after, in
// order, payloads and the decoded exit included, whatever the sizes of
// the events it skips (in the read buffer or seeked over), and stops
// when the loop does.
func TestSpool_EventsAfter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w, err := Create(dir, "JOB00000003")
	if err != nil {
		t.Fatal(err)
	}
	type ev struct {
		kind Kind
		seq  uint64
		data []byte
	}
	var evs []ev
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 40 {
		n := rng.IntN(3 * readBufBytes) // some fit the read buffer, some not
		if i%7 == 0 {
			n = 0
		}
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		k := []Kind{KindStdout, KindStderr}[rng.IntN(2)]
		seq := uint64(i + 1)
		if err := w.Append(k, seq, p); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev{k, seq, p})
	}
	exit := &Exit{Code: 137, Signal: "KILL", Reason: "wall-time", Detail: "ran for wall_time 1s"}
	if err := w.Close(41, exit); err != nil {
		t.Fatal(err)
	}
	sf, err := Open(Path(dir, "JOB00000003"))
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	for _, after := range []uint64{0, 1, 13, 39, 40, 41, 1000} {
		t.Run(fmt.Sprint(after), func(t *testing.T) {
			want := after + 1
			for got, err := range sf.EventsAfter(after) {
				if err != nil {
					t.Fatal(err)
				}
				if got.Seq != want {
					t.Fatalf("seq %d, want %d", got.Seq, want)
				}
				if want == 41 {
					if got.Kind != KindExit || got.Exit == nil || *got.Exit != *exit {
						t.Fatalf("exit event %+v, want %+v", got, exit)
					}
				} else if e := evs[want-1]; got.Kind != e.kind || !bytes.Equal(got.Payload, e.data) || got.Exit != nil {
					t.Fatalf("event %d: kind %c, %d bytes; want %c, %d", want, got.Kind, len(got.Payload), e.kind, len(e.data))
				}
				want++
			}
			if want != max(after+1, 42) {
				t.Fatalf("ended before seq %d, want after the exit (41)", want)
			}
		})
	}
	n := 0
	for range sf.EventsAfter(0) {
		if n++; n == 3 {
			break
		}
	}
}

// Ensure a writer refuses a seq that does not increase and a payload over
// MaxPayloadBytes, and that the refusal sticks (a spool never has a
// hole): later Appends and Close return it, and the file keeps what was
// written before.
func TestSpool_AppendRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		seq  uint64
		n    int
	}{{"seq repeated", 2, 1}, {"seq back", 1, 1}, {"too long", 3, MaxPayloadBytes + 1}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			w, err := Create(dir, "JOB00000004")
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Append(KindStdout, 2, []byte("ok")); err != nil {
				t.Fatal(err)
			}
			if err := w.Append(KindStdout, tc.seq, make([]byte, tc.n)); err == nil {
				t.Fatal("refused nothing")
			}
			if err := w.Append(KindStdout, 10, []byte("late")); err == nil {
				t.Fatal("took an event after a refusal")
			}
			if err := w.Close(11, &Exit{Reason: "exit"}); err == nil {
				t.Fatal("Close did not return the refusal")
			}
			sf, err := Open(Path(dir, "JOB00000004"))
			if err != nil {
				t.Fatal(err)
			}
			defer sf.Close()
			in, err := sf.Info()
			if err != nil || in.Events != 1 || in.LastSeq != 2 || in.Exit != nil {
				t.Fatalf("info %+v, %v: want the one event before the refusal", in, err)
			}
		})
	}
}

// procReadBytes is what this process has read through read syscalls
// (rchar of /proc/self/io).
func procReadBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	var n int64
	if _, err := fmt.Sscanf(string(b), "rchar: %d", &n); err != nil {
		t.Fatalf("/proc/self/io: %v", err)
	}
	return n
}

// Ensure a reader asking for the events after a late seq reads the headers
// it passes, not the payloads after them: 200 events of 100 KiB skipped
// cost far less than the 20 MB they hold (a buffer's 64 KiB each before).
// Not parallel: rchar counts the whole process.
func TestSpool_EventsAfterReadsHeadersOnly(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, "JOB00000001")
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 100<<10)
	for seq := uint64(1); seq <= 200; seq++ {
		if err := w.Append(KindStdout, seq, payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(201, &Exit{Code: 0, Reason: "exit"}); err != nil {
		t.Fatal(err)
	}
	sf, err := Open(Path(dir, "JOB00000001"))
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	before := procReadBytes(t)
	var seqs []uint64
	for ev, err := range sf.EventsAfter(199) {
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ev.Seq)
	}
	read := procReadBytes(t) - before
	if len(seqs) != 2 || seqs[0] != 200 || seqs[1] != 201 {
		t.Fatalf("events after 199: %v, want 200 and the exit", seqs)
	}
	if read > 1<<20 {
		t.Fatalf("read %d bytes to skip 199 events: want their headers, not their payloads", read)
	}
}
