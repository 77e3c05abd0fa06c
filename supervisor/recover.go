package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/sandbox"
)

// Recovered is what Recover found and did.
type Recovered struct {
	Cgroups int      // leftover cgroups killed and deleted
	Lost    []string // job IDs closed as lost
}

// leftoverKillTimeout bounds the wait for one leftover cgroup to empty.
const leftoverKillTimeout = 10 * time.Second

// Recover closes what a server of this ledger left when it died. Call it
// after opening the ledger (its lock makes this the only server of it) and
// before accepting connections:
//
//  1. every cgroup under CgroupParentFor(ledger), in every hierarchy jobs use, is
//     killed, and waited for until empty;
//  2. its final counters are read and its job's record is closed as lost,
//     ending at its last_seen;
//  3. the cgroup is deleted;
//  4. every record still starting or running (no cgroup: a plain job, or
//     one that died before its cgroup was made) is closed as lost.
//
// Each record is closed before its cgroup is deleted, so a server that
// dies during recovery leaves work that the next Recover finishes: it is
// idempotent. With sandboxed false, cgroups are not looked for.
func Recover(log *slog.Logger, ledger *accounting.Ledger, sandboxed bool) (Recovered, error) {
	var out Recovered
	open, err := ledger.OpenRecords()
	if err != nil {
		return out, fmt.Errorf("recover: %w", err)
	}
	byID := make(map[string]*accounting.Record, len(open))
	byCgroup := make(map[string]*accounting.Record, len(open))
	for i := range open {
		r := &open[i]
		byID[r.ID] = r
		if r.Cgroup != "" {
			byCgroup[path.Base(r.Cgroup)] = r
		}
	}
	var errs []error
	if sandboxed {
		left, err := sandbox.Leftovers(CgroupParentFor(ledger))
		if err != nil {
			return out, fmt.Errorf("recover: %w", err)
		}
		for _, lo := range left {
			if err := recoverCgroup(log, ledger, lo, byID, byCgroup); err != nil {
				errs = append(errs, err)
				continue
			}
			out.Cgroups++
		}
	}
	for i := range open {
		r := &open[i]
		if err := closeLost(log, ledger, r, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		out.Lost = append(out.Lost, r.ID)
	}
	return out, errors.Join(errs...)
}

// recoverCgroup kills one leftover cgroup, closes its job's record with
// the cgroup's final counters, then deletes the cgroup. A cgroup that
// belongs to no open record (a pool's initiator, or a job already closed
// by an earlier, interrupted recovery) is only killed and deleted.
func recoverCgroup(log *slog.Logger, ledger *accounting.Ledger, lo *sandbox.Leftover,
	byID, byCgroup map[string]*accounting.Record) error {
	if err := lo.KillAndWait(leftoverKillTimeout); err != nil {
		return fmt.Errorf("recover cgroup %s: %w", lo.Path(), err)
	}
	r := byCgroup[lo.Name]
	if r == nil { // a job that died before it was recorded running: JOBn.pid
		id, _, _ := strings.Cut(lo.Name, ".")
		r = byID[id]
	}
	if r != nil && r.State.Open() {
		u, err := lo.Usage()
		var usage *accounting.Usage
		if err == nil {
			cu := cgroupUsage(u)
			usage = &cu
		} else {
			log.Warn("recover: read final usage", "cgroup", lo.Path(), "err", err)
		}
		if err := closeLost(log.With("cgroup", lo.Path()), ledger, r, usage); err != nil {
			return err
		}
	}
	if err := lo.Delete(); err != nil {
		return fmt.Errorf("recover cgroup %s: %w", lo.Path(), err)
	}
	return nil
}

// closeLost writes r as lost, ending at its last_seen (the ledger gives
// every open record one), with usage when known, logs it, and marks r
// closed so it is not closed twice.
func closeLost(log *slog.Logger, ledger *accounting.Ledger, r *accounting.Record, usage *accounting.Usage) error {
	if !r.State.Open() {
		return nil
	}
	r.State, r.Reason = accounting.StateLost, accounting.ReasonLost
	r.Detail = "the server stopped while the job ran"
	r.EndedAt = r.LastSeen
	if usage != nil {
		r.Usage = *usage
	}
	if err := ledger.Put(r, true); err != nil {
		return fmt.Errorf("recover: close %s as lost: %w", r.ID, err)
	}
	log.Warn("job lost: the server stopped while it ran", "job", r.ID, "app", r.App, "tenant", r.Tenant,
		"last_seen", r.LastSeen)
	return nil
}
