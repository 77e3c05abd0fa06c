package supervisor

import (
	"syscall"

	"github.com/chimirror/chimirror/sandbox"
)

// Stream names an output stream of a job.
type Stream uint8

const (
	Stdout Stream = 1
	Stderr Stream = 2
)

func (s Stream) String() string {
	if s == Stderr {
		return "stderr"
	}
	return "stdout"
}

// InputKind is what a client asked for.
type InputKind uint8

const (
	// InputStdin writes Data to the job's stdin as-is.
	InputStdin InputKind = iota
	// InputCloseStdin makes the job read EOF.
	InputCloseStdin
	// InputSignal sends Signal to the job's process group.
	InputSignal
)

// Input is one decoded client event.
type Input struct {
	Kind   InputKind
	Data   []byte
	Signal syscall.Signal
	// Done, when set, is called once the input has been handled, with the
	// error if it failed (a protocol answers a client callback id with it).
	Done func(error)
}

// Reason says why a job ended. It is recorded, logged and sent to the client.
type Reason string

const (
	ReasonExit       Reason = "exit"        // the process exited by itself
	ReasonSignal     Reason = "signal"      // the process died of a signal it was sent or raised
	ReasonClientGone Reason = "client-gone" // close frame, dropped TCP, missed pong, write timeout, oversized message
	ReasonCancelled  Reason = "cancelled"   // an operator cancelled it
	ReasonShutdown   Reason = "shutdown"    // the server is stopping
	// Limits of the job's policy:
	ReasonOOM         Reason = "oom"          // the kernel's OOM killer struck in the job's cgroup
	ReasonCPUTime     Reason = "cpu-time"     // cpu_time used up
	ReasonWallTime    Reason = "wall-time"    // wall_time passed
	ReasonIdle        Reason = "idle"         // no I/O either way for idle_timeout
	ReasonOutputLimit Reason = "output-limit" // stdout+stderr passed max_output
)

// Exit is the end of a job as a client sees it.
type Exit struct {
	Status sandbox.ExitStatus
	Reason Reason
	// Detail says more, for logs and close frames: "write timeout", …
	Detail string
	// Usage is the job's final cgroup reading; valid when Sandboxed.
	Usage     sandbox.Usage
	Sandboxed bool
}

// Client is a job's connection, as a protocol adapter presents it. The
// supervisor never knows which protocol is in use.
//
// Concurrency contract: Receive is called from one goroutine. Send is called
// from the stdout and stderr pumps of the job's relay concurrently, and
// Input.Done callbacks and Finish may run alongside, so the adapter
// serialises its own writes. Send returns within a bounded time (a write
// timeout): the job's end waits for it. Close may be called at any time, from
// any goroutine, and must unblock Receive and Send.
type Client interface {
	// Receive blocks for the next client event. Any error means the client is
	// gone (or was closed) and no more input will come.
	Receive() (Input, error)
	// Send delivers one chunk of output, in order per stream. The adapter may
	// keep p only until Send returns. An error means the client cannot take
	// more output.
	Send(s Stream, p []byte) error
	// Flush sends the output the adapter still holds back (a last line
	// without its newline, a split UTF-8 sequence). It is called once, after
	// the last Send, before the job's final record is taken.
	Flush() error
	// Finish reports the end of the job, sends the closing handshake and waits
	// a bounded time for the client's close. It is the last call but Close.
	Finish(e Exit) error
	// Close tears the connection down at once.
	Close() error
	// MessagesOut is how many messages the client has been sent: a
	// protocol may frame one output chunk as several. The final record
	// takes it after Flush, so it counts every message but Finish's own
	// report of the end.
	MessagesOut() int64
}
