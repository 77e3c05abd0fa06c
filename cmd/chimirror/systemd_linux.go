package main

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// setCloseOnExec marks fd close-on-exec; one that is not open is left to
// adoptListener to report.
func setCloseOnExec(fd int) { unix.CloseOnExec(fd) }

// adoptListener makes the passed descriptor fd a net.Listener for role,
// after checking it is what a socket unit with ListenStream=ADDRESS:PORT
// and Accept=no passes: a listening TCP socket. fd itself is closed (the
// listener holds a duplicate).
func adoptListener(fd int, role string) (net.Listener, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("not an open descriptor: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, errors.New("not a socket: chimirror takes sockets from socket units (ListenStream=ADDRESS:PORT)")
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("socket type: %w", err)
	}
	if typ != unix.SOCK_STREAM {
		return nil, errors.New("not a stream socket (ListenDatagram=, ListenSequentialPacket=?): chimirror takes ListenStream=ADDRESS:PORT")
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return nil, fmt.Errorf("socket domain: %w", err)
	}
	if domain != unix.AF_INET && domain != unix.AF_INET6 {
		return nil, fmt.Errorf("not a TCP socket (address family %d; ListenStream=/PATH is a UNIX socket): chimirror takes ListenStream=ADDRESS:PORT", domain)
	}
	listening, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return nil, fmt.Errorf("socket state: %w", err)
	}
	if listening != 1 {
		return nil, errors.New("not a listening socket (Accept=yes passes one connection): chimirror needs Accept=no")
	}
	f := os.NewFile(uintptr(fd), role)
	ln, err := net.FileListener(f)
	if cerr := f.Close(); cerr != nil {
		err = errors.Join(err, cerr)
		if ln != nil {
			err = errors.Join(err, ln.Close())
			ln = nil
		}
	}
	if err != nil {
		return nil, err
	}
	// Accepted connections get Go's default TCP keepalive here: a
	// listener made from a descriptor has no ListenConfig to turn it off
	// with, as startInstance does for its own. That costs the setsockopt
	// calls per connection startInstance saves, and changes nothing else.
	return ln, nil
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as MONOTONIC_USEC=
// wants it.
func monotonicUsec() (uint64, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, false
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3, true
}
