package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/sandbox"
)

// Recovered is what a recovery found and did.
type Recovered struct {
	Cgroups int      // leftover cgroups killed and deleted
	Lost    []string // job IDs closed as lost
	Stuck   int      // leftover cgroups still holding a live task when it stopped
}

// Recovery closes what a server of this ledger left when it died. It is
// made in two steps so that a server listens within moments of its start,
// whatever was left behind:
//
//	FindLeftovers   before the server listens or starts a job: the open
//	                records and the leftover cgroups, as they are now (a
//	                directory listing: it takes milliseconds for thousands)
//	Run             beside new jobs: it touches only what Find saw, so a
//	                new job, whose record and cgroup came later, is never
//	                swept
//
// Run, in order:
//
//  1. closes every open record that has no leftover cgroup (a plain job,
//     or one that died before its cgroup was made) as lost;
//  2. kills every leftover cgroup at once, thawing any the dead server
//     froze mid-kill, then waits for all of them together: a cgroup is
//     done when no live task is left (zombies waiting for a foreign reaper
//     do not count);
//  3. for each one done: reads its final counters, closes its job's record
//     as lost (ending at its last_seen), and only then deletes it, retrying
//     a removal the kernel refuses for a moment.
//
// Each record is closed before its cgroup is deleted, so a server that
// dies or is stopped during Run leaves work that the next start finishes:
// recovery is idempotent. A cgroup that still holds a live task after
// StuckAfter (a task in D state) is logged as stuck and retried, its
// record left open, until ctx ends.
type Recovery struct {
	log      *slog.Logger
	ledger   *accounting.Ledger
	open     []accounting.Record
	left     []*sandbox.Leftover
	spoolDir string // see SetSpoolDir
}

// StuckAfter is how long a leftover cgroup may hold a live task after its
// kill before it is reported stuck.
const StuckAfter = 20 * time.Second

// FindLeftovers lists what Run will sweep. Call it after opening the
// ledger (its lock makes this the only server of it) and before the
// server listens, starts a job or ticks. With sandboxed false, cgroups are
// not looked for.
//
// It writes each open record's last_seen into the record, durably: an
// open record's last_seen is otherwise the ledger's heartbeat, which this
// server moves on from its first tick, while a record that Run leaves
// open (stopped, or a stuck cgroup) waits for the next start.
func FindLeftovers(log *slog.Logger, ledger *accounting.Ledger, sandboxed bool) (*Recovery, error) {
	open, err := ledger.OpenRecords()
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	waits := make([]func() error, len(open))
	for i := range open {
		waits[i] = ledger.PutLater(&open[i]) // LastSeen as decoded: the dead server's
	}
	var errs []error
	for i, wait := range waits {
		if err := wait(); err != nil {
			errs = append(errs, fmt.Errorf("fix the last_seen of %s: %w", open[i].ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	r := &Recovery{log: log, ledger: ledger, open: open}
	if sandboxed {
		if r.left, err = sandbox.Leftovers(CgroupParentFor(ledger)); err != nil {
			return nil, fmt.Errorf("recover: %w", err)
		}
	}
	return r, nil
}

// Pending is how many open records and leftover cgroups Run has to close.
func (r *Recovery) Pending() (records, cgroups int) { return len(r.open), len(r.left) }

// Recover finds and sweeps in one call, for a caller with nothing to serve
// meanwhile (tests, and tools that only need the ledger closed).
func Recover(log *slog.Logger, ledger *accounting.Ledger, sandboxed bool) (Recovered, error) {
	r, err := FindLeftovers(log, ledger, sandboxed)
	if err != nil {
		return Recovered{}, err
	}
	return r.Run(context.Background())
}

// Run sweeps what FindLeftovers found; see Recovery. It returns when
// everything is closed and deleted, or when ctx ends (a server stopping):
// what it closed stays closed, and the rest is left for the next start.
// Call it once.
func (r *Recovery) Run(ctx context.Context) (Recovered, error) {
	var out Recovered
	byID := make(map[string]*accounting.Record, len(r.open))
	byCgroup := make(map[string]*accounting.Record, len(r.open))
	for i := range r.open {
		rec := &r.open[i]
		byID[rec.ID] = rec
		if rec.Cgroup != "" {
			byCgroup[path.Base(rec.Cgroup)] = rec
		}
	}
	owner := func(lo *sandbox.Leftover) *accounting.Record {
		if rec := byCgroup[lo.Name]; rec != nil {
			return rec
		}
		id, _, _ := strings.Cut(lo.Name, ".") // a job that died before it was recorded running: JOBn.pid
		return byID[id]
	}
	// 1. Records whose job has no cgroup left have nothing to wait for.
	owned := make(map[*accounting.Record]bool, len(r.left))
	for _, lo := range r.left {
		if rec := owner(lo); rec != nil {
			owned[rec] = true
		}
	}
	var alone []*accounting.Record
	for i := range r.open {
		if !owned[&r.open[i]] {
			alone = append(alone, &r.open[i])
		}
	}
	lost, err := r.closeLost(alone, nil)
	out.Lost = append(out.Lost, lost...)
	errs := []error{err}

	// 2. Kill them all, then wait for them together. A cgroup's failures
	// are logged once: the loop retries every few hundred ms.
	failed := make(map[*sandbox.Leftover]bool)
	warn := func(lo *sandbox.Leftover, what string, err error) {
		if !failed[lo] {
			failed[lo] = true
			r.log.Warn("recover: "+what+" leftover cgroup; retrying", "cgroup", lo.Path(), "err", err)
		}
	}
	pending := r.left
	for _, lo := range pending {
		if err := lo.Kill(); err != nil {
			warn(lo, "kill", err)
		}
	}
	var undeleted []*sandbox.Leftover
	stuckAt := time.Now().Add(StuckAfter)
	reported := false
	for delay := 5 * time.Millisecond; len(pending) > 0; delay = min(delay*2, 250*time.Millisecond) {
		var dead, live []*sandbox.Leftover
		for _, lo := range pending {
			alive, err := lo.Live()
			if err != nil {
				warn(lo, "read", err)
			}
			if alive || err != nil {
				live = append(live, lo)
				continue
			}
			dead = append(dead, lo)
		}
		// 3. Close the dead ones' records, then delete them.
		records := make([]*accounting.Record, 0, len(dead))
		usages := make([]*accounting.Usage, 0, len(dead))
		var closable []*sandbox.Leftover
		for _, lo := range dead {
			rec := owner(lo)
			if rec == nil || !rec.State.Open() { // a pool's initiator, or closed by an interrupted recovery
				undeleted = append(undeleted, lo)
				continue
			}
			var usage *accounting.Usage
			if u, err := lo.Usage(); err == nil {
				cu := cgroupUsage(u)
				usage = &cu
			} else {
				r.log.Warn("recover: read final usage", "cgroup", lo.Path(), "err", err)
			}
			records, usages = append(records, rec), append(usages, usage)
			closable = append(closable, lo)
		}
		lost, err := r.closeLost(records, usages)
		out.Lost = append(out.Lost, lost...)
		errs = append(errs, err)
		for _, lo := range closable {
			if rec := owner(lo); rec != nil && rec.State.Open() {
				continue // its record failed to close: keep the cgroup, which says the job existed
			}
			undeleted = append(undeleted, lo)
		}
		undeleted = r.deleteAll(ctx, undeleted, &out)
		pending = live
		if len(pending) == 0 {
			break
		}
		if !reported && time.Now().After(stuckAt) {
			reported = true
			r.log.Error("recover: leftover cgroups still hold live tasks after their kill; retrying",
				"stuck", len(pending), "first", pending[0].Path(), "after", StuckAfter)
		}
		for _, lo := range pending { // tasks forked as the last kill landed
			if err := lo.Kill(); err != nil {
				warn(lo, "kill", err)
			}
		}
		select {
		case <-ctx.Done():
			out.Stuck = len(pending)
			return out, errors.Join(append(errs, fmt.Errorf("recover: stopped with %d leftover cgroups still live: %w", len(pending), ctx.Err()))...)
		case <-time.After(delay):
		}
	}
	// Removals the kernel refused (EBUSY just after the last task went)
	// are retried until they succeed or ctx ends.
	for delay := 10 * time.Millisecond; len(undeleted) > 0; delay = min(delay*2, time.Second) {
		select {
		case <-ctx.Done():
			return out, errors.Join(append(errs, fmt.Errorf("recover: stopped with %d leftover cgroups not deleted: %w", len(undeleted), ctx.Err()))...)
		case <-time.After(delay):
		}
		undeleted = r.deleteAll(ctx, undeleted, &out)
	}
	return out, errors.Join(errs...)
}

// deleteAll deletes each cgroup and returns those the kernel refused, and
// those not tried because ctx ended.
func (r *Recovery) deleteAll(ctx context.Context, left []*sandbox.Leftover, out *Recovered) []*sandbox.Leftover {
	var again []*sandbox.Leftover
	for i, lo := range left {
		if ctx.Err() != nil {
			return append(again, left[i:]...)
		}
		if err := lo.Delete(); err != nil {
			r.log.Debug("recover: delete leftover cgroup; will retry", "cgroup", lo.Path(), "err", err)
			again = append(again, lo)
			continue
		}
		out.Cgroups++
	}
	return again
}

// closeLost writes each record as lost, ending at its last_seen (the
// ledger gives every open record one), with usages[i] when known, in as
// few commits as the ledger's writer makes of them; it logs each, marks it
// closed so it is not closed twice, and returns the IDs closed.
func (r *Recovery) closeLost(recs []*accounting.Record, usages []*accounting.Usage) ([]string, error) {
	waits := make([]func() error, len(recs))
	was := make([]accounting.State, len(recs))
	for i, rec := range recs {
		was[i] = rec.State
		rec.State, rec.Reason = accounting.StateLost, accounting.ReasonLost
		rec.Detail = "the server stopped while the job ran"
		rec.EndedAt = rec.LastSeen
		if usages != nil && usages[i] != nil {
			rec.Usage = *usages[i]
		}
		r.sealSpool(rec)
		waits[i] = r.ledger.PutLater(rec)
	}
	var ids []string
	var errs []error
	for i, rec := range recs {
		if err := waits[i](); err != nil {
			rec.State = was[i] // not closed: the next start tries again
			errs = append(errs, fmt.Errorf("recover: close %s as lost: %w", rec.ID, err))
			continue
		}
		ids = append(ids, rec.ID)
		r.log.Info("job lost: the server stopped while it ran", "job", rec.ID, "app", rec.App, "tenant", rec.Tenant,
			"last_seen", rec.LastSeen)
	}
	return ids, errors.Join(errs...)
}
