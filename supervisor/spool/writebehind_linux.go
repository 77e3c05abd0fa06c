package spool

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// writeBehind starts writing f's window [off, off+n) to disk, and waits
// for the window before it to be written and drops that from the page
// cache (see writeBehindWindowBytes). An error is an I/O error of the
// file's writeback: the spool is not whole.
func writeBehind(f *os.File, off, n int64) error {
	fd := int(f.Fd())
	if err := unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE); err != nil {
		return fmt.Errorf("sync_file_range: %w", err)
	}
	if off < n {
		return nil
	}
	prev := off - n
	if err := unix.SyncFileRange(fd, prev, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
		return fmt.Errorf("sync_file_range: %w", err)
	}
	if err := unix.Fadvise(fd, prev, n, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise: %w", err)
	}
	return nil
}
