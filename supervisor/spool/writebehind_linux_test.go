package spool

import (
	"errors"
	"hash/crc32"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ensure a spool longer than several write-behind windows reads back
// byte-exact, also while it is written (a reader of the windows already
// dropped from the cache reads them from disk), and that the writer keeps
// little of it in the page cache: its first window is not resident soon
// after the third is begun.
func TestSpool_WriteBehind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w, err := Create(dir, "JOB00000001")
	if err != nil {
		t.Fatal(err)
	}
	w.noDirect = true // the page-cache path, which the write-behind serves
	// A tmpfs is the page cache: there is nothing to drop it to.
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	inMemory := fs.Type == unix.TMPFS_MAGIC
	if inMemory {
		t.Logf("%s is a tmpfs: the page cache residency is not checked", dir)
	}
	const chunkBytes, events = 256 << 10, 5 * writeBehindWindowBytes / (256 << 10)
	want := crc32.NewIEEE()
	chunk := make([]byte, chunkBytes)
	for i := range events {
		for j := range chunk {
			chunk[j] = byte(i*7 + j)
		}
		want.Write(chunk)
		if err := w.Append(KindStdout, uint64(i+1), chunk); err != nil {
			t.Fatal(err)
		}
		if i == events/2 && !inMemory { // 2.5 windows written: the first is dropped, soon
			resident := residentBytes(t, Path(dir, "JOB00000001"), writeBehindWindowBytes)
			for deadline := time.Now().Add(10 * time.Second); resident > writeBehindWindowBytes/4 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				resident = residentBytes(t, Path(dir, "JOB00000001"), writeBehindWindowBytes)
			}
			if resident > writeBehindWindowBytes/4 {
				t.Errorf("%d bytes of the spool's first window are in the page cache 10 s after 2.5 were written: the writer does not drop it", resident)
			}
			// A reader while it is written reads the dropped window
			// from disk.
			if n := readAllCRC(t, Path(dir, "JOB00000001"), nil); n != int64(i+1)*chunkBytes {
				t.Fatalf("a reader mid-way read %d bytes, want %d", n, (i+1)*chunkBytes)
			}
		}
	}
	if err := w.Close(events+1, &Exit{Reason: "exit"}); err != nil {
		t.Fatal(err)
	}
	got := crc32.NewIEEE()
	if n := readAllCRC(t, Path(dir, "JOB00000001"), got); n != events*chunkBytes || got.Sum32() != want.Sum32() {
		t.Fatalf("read back %d bytes (crc %x), want %d (crc %x)", n, got.Sum32(), events*chunkBytes, want.Sum32())
	}
}

// readAllCRC reads the spool's stdout, adding it to h when h is not nil,
// and returns its length.
func readAllCRC(t *testing.T, path string, h io.Writer) int64 {
	t.Helper()
	sf, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	if h == nil {
		h = io.Discard
	}
	n, err := io.Copy(h, sf.Stream(SelectStdout))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// residentBytes is how much of path's first n bytes the page cache holds.
func residentBytes(t *testing.T, path string, n int) int { return residentBytesAt(t, path, 0, n) }

// residentBytesAt is how much of path's n bytes from off (page-aligned)
// the page cache holds (mincore(2) of a mapping, which faults nothing in).
func residentBytesAt(t *testing.T, path string, off int64, n int) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), off, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Munmap(m); err != nil {
			t.Error(err)
		}
	}()
	page := os.Getpagesize()
	vec := make([]byte, (n+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(n), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	resident := 0
	for _, v := range vec {
		resident += int(v&1) * page
	}
	return resident
}

// Ensure a file system that does not take the write-behind's hints is not
// a spool failure, and an I/O error is.
func TestSpool_WriteBehindErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		errno       syscall.Errno
		unsupported bool
	}{
		{syscall.ENOSYS, true}, {syscall.EINVAL, true}, {syscall.EOPNOTSUPP, true}, {syscall.EPERM, true}, {syscall.ESPIPE, true},
		{syscall.EIO, false}, {syscall.ENOSPC, false},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			if got := errors.Is(syncFileRangeErr(tc.errno), errNoWriteBehind); got != tc.unsupported {
				t.Fatalf("%v taken as unsupported: %v, want %v", tc.errno, got, tc.unsupported)
			}
		})
	}
}
