package sandbox

import (
	"log/slog"
	"sync"
	"time"
)

// Pool keeps up to Size initiators prepared from one Isolation template, so
// a job's critical path is only the hot part of its setup. Initiators are
// never reused: each Get hands one out for good, and background goroutines
// (fillers, owned by the pool and stopped by Close) prepare the next. A Pool
// holds at most Size+fillers prepared initiators (each filler may hold one
// waiting to be put in).
type Pool struct {
	r     *Runner
	log   *slog.Logger
	tmpl  Isolation
	ready chan *Initiator
	stop  chan struct{}
	done  chan struct{}
}

// NewPool starts filling a pool of size initiators for tmpl (its ID is
// ignored: each job names its own). Close it when done.
func (r *Runner) NewPool(log *slog.Logger, tmpl Isolation, size int) *Pool {
	tmpl.ID = ""
	p := &Pool{r: r, log: log, tmpl: tmpl, ready: make(chan *Initiator, size),
		stop: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	for i := 0; i < fillers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); p.fill() }()
	}
	go func() { wg.Wait(); close(p.done) }()
	return p
}

// fill prepares initiators until stopped; on failure it backs off.
func (p *Pool) fill() {
	backoff := 100 * time.Millisecond
	for {
		in, err := p.r.Prepare(p.tmpl)
		if err != nil {
			p.log.Warn("prepare initiator", "err", err, "retry_in", backoff)
			select {
			case <-p.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		select {
		case p.ready <- in:
		case <-p.stop:
			p.discard(in)
			return
		}
		// An initiator was just taken, by a job now starting on the
		// same CPUs: while the pool holds half its size or more, the
		// next preparation waits for that start to be done.
		if len(p.ready) >= cap(p.ready)/2 {
			select {
			case <-p.stop:
				return
			case <-time.After(refillPause):
			}
		}
	}
}

// refillPause is how long a filler waits, after its initiator was taken
// from a pool at least half full, before it prepares the next one. A
// preparation (a clone into new namespaces, a root built, cgroups made:
// about 2 ms of CPU) run beside a job's start slowed the start by about as
// much on the 2-vCPU bench machine (a session paced 20 ms apart, dial to
// echo to close: p50 4.8 ms with the refill at once, 3.4 ms with it 8 ms
// later).
const refillPause = 10 * time.Millisecond

func (p *Pool) discard(in *Initiator) {
	if err := in.Discard(); err != nil {
		p.log.Warn("discard initiator", "err", err)
	}
}

// Get returns a prepared initiator, or nil when none is ready (the caller
// prepares one itself).
func (p *Pool) Get() *Initiator {
	select {
	case in := <-p.ready:
		return in
	default:
		return nil
	}
}

// Close stops refilling and discards the prepared initiators.
func (p *Pool) Close() {
	close(p.stop)
	<-p.done
	for {
		select {
		case in := <-p.ready:
			p.discard(in)
		default:
			return
		}
	}
}
