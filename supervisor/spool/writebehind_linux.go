package spool

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// startWriteBehind starts writing f's window [off, off+n) to disk, without
// waiting for it (see writeBehindWindowBytes). An error wrapping
// errNoWriteBehind means the file system (or a seccomp profile) does not
// take the hints: the spool is whole, and stays in the page cache from
// then on.
func startWriteBehind(f *os.File, off, n int64) error {
	if err := unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE); err != nil {
		return syncFileRangeErr(err)
	}
	return nil
}

// finishWriteBehind waits for f's window [off, off+n), whose writeback
// startWriteBehind started, to be written, and drops it from the page
// cache. An error wrapping errNoWriteBehind is as startWriteBehind's; any
// other is an I/O error of the file's writeback, and the spool is not
// whole: it must fail, since sync_file_range's wait consumes the error
// that the final fsync would otherwise have reported.
func finishWriteBehind(f *os.File, off, n int64) error {
	fd := int(f.Fd())
	if err := unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
		return syncFileRangeErr(err)
	}
	if err := unix.Fadvise(fd, off, n, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("%w: fadvise: %w", errNoWriteBehind, err) // a hint: never a failure
	}
	return nil
}

// syncFileRangeErr tells a missing sync_file_range(2) from an I/O error.
func syncFileRangeErr(err error) error {
	for _, no := range []syscall.Errno{syscall.ENOSYS, syscall.EINVAL, syscall.EOPNOTSUPP, syscall.EPERM, syscall.ESPIPE} {
		if errors.Is(err, no) {
			return fmt.Errorf("%w: sync_file_range: %w", errNoWriteBehind, err)
		}
	}
	return fmt.Errorf("sync_file_range: %w", err)
}
