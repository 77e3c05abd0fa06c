package spool

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// Ensure the streams read back byte-exact, each alone and both in event
// order, binary and empty chunks and chunks over MaxPayloadBytes
// included, from any offset; events are numbered from 1 and the exit is
// last.
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
			n = MaxPayloadBytes + 10
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
		if _, err := w.Append(k, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(&Exit{Code: 3, Reason: "exit"}); err != nil {
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
	if in.Exit == nil || in.Exit.Code != 3 || in.LastSeq != uint64(in.Events) || in.Events != 202 || in.ValidBytes != sf.Size() {
		t.Fatalf("info %+v: want 201 output events (one split) and the exit, numbered from 1", in)
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
	if _, err := w.Append(KindStdout, []byte("whole")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(nil); err != nil { // lost: no exit
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
