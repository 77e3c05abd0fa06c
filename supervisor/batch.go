package supervisor

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrNotBatch is returned by RunBatch for a job whose app is interactive.
var ErrNotBatch = errors.New("not a batch app")

// errBatchEnded is what a Batch's stdin calls return once its job's end
// has been reported.
var errBatchEnded = errors.New("the job has ended")

// Batch is a batch job's stand-in for a client (mode = "batch"): nothing
// is attached, so the job runs until it ends by itself or by a limit, its
// output going only to its spool. Its stdin is fed by whoever submitted
// it (Write, CloseStdin), from one goroutine.
type Batch struct {
	j      *Job
	inputs chan Input    // to the job's input loop, unbuffered
	done   chan struct{} // closed by Finish or Close: Receive returns EOF
	close  func()        // closes done, once
	wrote  sync.Mutex    // one stdin call at a time
}

// RunBatch runs j, a job of a batch app just returned by Start, with no
// client, on a goroutine owned by the job (Shutdown waits for it). The
// returned Batch feeds its stdin.
func (j *Job) RunBatch() (*Batch, error) {
	if !j.App.RunsBatch() {
		return nil, fmt.Errorf("job %s: app %s: %w", j.ID, j.App.Name, ErrNotBatch)
	}
	b := &Batch{j: j, inputs: make(chan Input), done: make(chan struct{})}
	b.close = sync.OnceFunc(func() { close(b.done) })
	j.StartRecorded()
	go j.Run(b)
	return b, nil
}

// Write writes p to the job's stdin and returns once the job took it, or
// could not: its stdin is closed, the job ended, or is ending (a limit).
func (b *Batch) Write(p []byte) (int, error) {
	if err := b.input(Input{Kind: InputStdin, Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseStdin makes the job read EOF.
func (b *Batch) CloseStdin() error { return b.input(Input{Kind: InputCloseStdin}) }

// Cancel ends the job (exit signal, grace, kill) as its client gone: the
// submit that made it failed.
func (b *Batch) Cancel(detail string) { b.j.terminate(ReasonClientGone, detail) }

// input hands in to the job's input loop and waits for it to be applied.
func (b *Batch) input(in Input) error {
	b.wrote.Lock()
	defer b.wrote.Unlock()
	res := make(chan error, 1)
	in.Done = func(err error) { res <- err }
	select {
	case b.inputs <- in:
	case <-b.done:
		return fmt.Errorf("job %s: %w", b.j.ID, errBatchEnded)
	}
	return <-res // the input loop answers every input it took
}

// Receive gives the job the submitter's stdin until the end is reported.
func (b *Batch) Receive() (Input, error) {
	select {
	case in := <-b.inputs:
		return in, nil
	case <-b.done:
		return Input{}, io.EOF
	}
}

// Resume is never called: a batch job's stand-in is its first client.
func (b *Batch) Resume(Position) error { return nil }

// Send drops the output: the job's spool writer spools it from the ring.
func (b *Batch) Send(Event) error { return nil }

func (b *Batch) Flush() error       { return nil }
func (b *Batch) MessagesOut() int64 { return 0 }

// Finish ends Receive: the job is over.
func (b *Batch) Finish(Event) error {
	b.close()
	return nil
}

// Dismiss ends Receive: nothing dismisses a batch job's stand-in but the
// server.
func (b *Batch) Dismiss(Dismissal, string) error {
	b.close()
	return nil
}

// Close ends Receive.
func (b *Batch) Close() error {
	b.close()
	return nil
}
