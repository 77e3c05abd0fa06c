package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// permanentErrnos fail a start the same way every time: a missing or
// unreadable program, dir or interpreter, a file the kernel cannot run, a
// path or argument list too long, or a privilege the host denies. Errnos
// of what runs short for a while (EAGAIN, ENOMEM, EBUSY, EMFILE, ENOSPC)
// are not among them.
// (ELIBBAD, Linux's "corrupted shared library", is in
// cannotstart_linux.go.)
var permanentErrnos = append([]syscall.Errno{
	syscall.ENOENT, syscall.ENOTDIR, syscall.EISDIR, syscall.ELOOP, syscall.ENAMETOOLONG,
	syscall.EACCES, syscall.EPERM, syscall.ENOEXEC, syscall.E2BIG,
}, osPermanentErrnos...)

// cannotStart returns cause as an ErrCannotStart when starting app again
// would fail as it did, and nil when a retry may succeed. It looks at the
// app's files on the host first: a sandbox's init reports its failures as
// text, with no errno to go by, and what is wrong with the file says more
// than the step that tripped on it.
func cannotStart(app *App, cause error) error {
	if problem := filesProblem(app); problem != nil {
		return fmt.Errorf("%w: %w (%w)", ErrCannotStart, problem, cause)
	}
	for _, errno := range permanentErrnos {
		if errors.Is(cause, errno) {
			return fmt.Errorf("%w: %w", ErrCannotStart, cause)
		}
	}
	return nil
}

// filesProblem says what keeps app's program or dir from being what they
// were when the app loaded: an executable regular file and a directory.
func filesProblem(app *App) error {
	st, err := os.Stat(app.Path)
	switch {
	case err != nil:
		return fmt.Errorf("program %s: %w", app.Path, pathErrno(err))
	case !st.Mode().IsRegular():
		return fmt.Errorf("program %s is not a regular file", app.Path)
	case st.Mode()&0o111 == 0:
		return fmt.Errorf("program %s is not executable (mode %s)", app.Path, st.Mode())
	}
	if app.Dir == "" {
		return nil
	}
	st, err = os.Stat(app.Dir)
	switch {
	case err != nil:
		return fmt.Errorf("dir %s: %w", app.Dir, pathErrno(err))
	case !st.IsDir():
		return fmt.Errorf("dir %s is not a directory", app.Dir)
	}
	return nil
}

// pathErrno is a *fs.PathError's own error, without the operation and
// path the caller names itself.
func pathErrno(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
