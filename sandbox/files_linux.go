package sandbox

import (
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// The small files of cgroups and /proc, read and written with the system
// calls they need and no more.

// readSmall reads a small file (a cgroup's, a /proc one) whole: open,
// read and close, and no more. os.ReadFile registers each cgroup file with
// the runtime's poller (kernfs files are pollable), which took three times
// the system calls; a sandboxed job reads about twenty of them.
func readSmall(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var buf [512]byte
	b := buf[:0]
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, cap(b))
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

// writeExisting writes data to a file that must exist, with open, write
// and close only (see readSmall). os.WriteFile creates, and cgroupfs
// answers a create of a file it does not have with EACCES, not ENOENT: a
// missing cgroup.kill (kernels before 5.14) must read as missing.
func writeExisting(file, data string) error {
	fd, err := unix.Open(file, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: file, Err: err}
	}
	defer unix.Close(fd)
	for {
		_, err = unix.Write(fd, []byte(data))
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return &os.PathError{Op: "write", Path: file, Err: err}
	}
	return nil
}
