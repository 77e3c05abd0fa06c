package spool

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// openDirect opens path for direct writes; an error wrapping errNoDirect
// means the file system takes none (a tmpfs of an older kernel, some FUSE
// ones).
func openDirect(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if directRefused(err) {
		return nil, fmt.Errorf("%w: %w", errNoDirect, err)
	}
	return f, err
}

// directRefused tells a file system's refusal of direct I/O from an I/O
// error.
func directRefused(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP)
}
