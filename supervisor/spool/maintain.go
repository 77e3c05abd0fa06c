package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Seal makes the spool of a job that will write no more (its server died
// while it ran) whole and durable: a torn last event is cut off, and the
// file is synced. It is idempotent. It returns what the spool holds.
func Seal(path string) (_ Info, retErr error) {
	sf, err := Open(path)
	if err != nil {
		return Info{}, err
	}
	defer func() { retErr = errors.Join(retErr, sf.Close()) }()
	in, err := sf.Info()
	if err != nil {
		return in, fmt.Errorf("seal spool %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return in, fmt.Errorf("seal spool: %w", err)
	}
	if in.ValidBytes < sf.Size() {
		if err := f.Truncate(in.ValidBytes); err != nil {
			return in, fmt.Errorf("seal spool %s: %w", path, errors.Join(err, f.Close()))
		}
	}
	if err := f.Sync(); err != nil {
		return in, fmt.Errorf("seal spool %s: %w", path, errors.Join(err, f.Close()))
	}
	return in, f.Close()
}

// pruneBatch is how many directory entries Prune reads at a time.
const pruneBatch = 256

// Prune removes the spool files in dir last written before cutoff, except
// those of jobs for which keep returns true (still running: a quiet job's
// file is old too), removing at most maxFiles (0: no bound) per call. It
// reads the directory pruneBatch entries at a time and stops between
// removals when ctx ends. It returns how many files it removed. A dir that
// does not exist has nothing to prune.
func Prune(ctx context.Context, dir string, cutoff time.Time, keep func(id string) bool, maxFiles int) (removed int, retErr error) {
	d, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("prune spool: %w", err)
	}
	defer func() { retErr = errors.Join(retErr, d.Close()) }()
	var errs []error
	for {
		ents, err := d.ReadDir(pruneBatch)
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return removed, errors.Join(append(errs, err)...)
			}
			if maxFiles > 0 && removed >= maxFiles {
				return removed, errors.Join(errs...)
			}
			id, ok := strings.CutSuffix(e.Name(), Ext)
			if !ok || !e.Type().IsRegular() || keep(id) {
				continue
			}
			info, ierr := e.Info()
			if ierr != nil || !info.ModTime().Before(cutoff) {
				continue // removed meanwhile, or young
			}
			if rerr := os.Remove(Path(dir, id)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("prune spool: %w", rerr))
				continue
			}
			removed++
		}
		if errors.Is(err, io.EOF) || len(ents) == 0 {
			return removed, errors.Join(errs...)
		}
		if err != nil {
			return removed, errors.Join(append(errs, fmt.Errorf("prune spool: %w", err))...)
		}
	}
}
