package supervisor

import (
	"errors"
	"fmt"
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
	// InputAck acknowledges every output event up to Seq: the client
	// holds them, and the ring may let them go. The first one switches
	// the attachment to acknowledging (see Job.Attach).
	InputAck
	// InputDetach leaves the job running without this client, for its
	// policy's detach_timeout.
	InputDetach
)

// Input is one decoded client event.
type Input struct {
	Kind   InputKind
	Data   []byte
	Signal syscall.Signal
	Seq    uint64 // InputAck's
	// An InputStdin with a Stream is numbered: Offset is the position of
	// Data's first byte in that stream, the stdin one client session
	// sends, counted from 0. A client that cannot tell whether its input
	// arrived before a cut sends it again, numbered as before: the job
	// writes only the bytes past what it took of the stream, and refuses
	// input past that (ErrStdinGap: bytes before it were lost). Streams
	// are the clients': two sessions that take turns at a job number
	// their input each its own way. The job remembers the last
	// MaxStdinStreams streams.
	Stream string
	Offset int64
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
	ReasonDetached   Reason = "detached"    // no client reattached within detach_timeout
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

// Client is one connection to a job, as a protocol adapter presents it:
// the job's attached client or a watcher. The supervisor never knows which
// protocol is in use.
//
// Concurrency contract: Receive is called from one goroutine. Resume,
// Send, Flush and Finish are called in that order from one other
// goroutine (the attachment's writer), and Input.Done callbacks may run
// alongside, so the adapter serialises its own writes. Send returns
// within a bounded time (a write timeout). Close and CloseWith may be
// called at any time, from any goroutine, and must unblock Receive and
// Send.
type Client interface {
	// Receive blocks for the next client event. Any error means the client is
	// gone (or was closed) and no more input will come; a *CloseError
	// says the client sent a close frame, and with which code.
	Receive() (Input, error)
	// Resume is called once, before anything else is sent, on a client
	// that attached to a running job (not on the job's first client): the
	// next event it gets is p.Next, and events p.GapFrom … p.GapTo (when
	// GapTo > 0) are gone from the ring, acknowledged before.
	Resume(p Position) error
	// Send delivers one output event, in seq order. The adapter may keep
	// ev.Data only until Send returns, and must not change it. An error
	// means the client cannot take more output.
	Send(ev Event) error
	// Flush sends the output the adapter still holds back (a last line
	// without its newline). It is called once, before Finish.
	Flush() error
	// Finish reports the end of the job (ev.Exit), sends the closing
	// handshake and returns; the client's close then ends Receive, which
	// waits a bounded time for it. It is the last call but Close.
	Finish(ev Event) error
	// Dismiss tells the client why the server ends its connection (a
	// take-over, a slow watcher, a /detach, ...) with the closing
	// handshake, then tears the connection down.
	Dismiss(why Dismissal, detail string) error
	// Close tears the connection down at once.
	Close() error
	// MessagesOut is how many messages the client has been sent.
	MessagesOut() int64
}

// Acknowledger is a Client that may say, before anything is sent to it,
// that it acknowledges by itself (InputAck): its attachment starts so,
// and nothing written to it counts as acknowledged until it says.
type Acknowledger interface {
	AcksFromStart() bool
}

// Dismissal is why the server ends a client's connection while the job
// goes on (Client.Dismiss).
type Dismissal uint8

const (
	// DismissTakenOver: another client attached to the job.
	DismissTakenOver Dismissal = iota + 1
	// DismissTooSlow: a watcher fell behind the ring.
	DismissTooSlow
	// DismissDetached: the client asked to detach (InputDetach).
	DismissDetached
	// DismissGone: the job ended (its end delivered or abandoned) before
	// this client could attach.
	DismissGone
)

// ErrClientViolation is wrapped by a Receive error that says the client
// broke the protocol (a message over the size limit): the job ends, as
// for a close frame with code 1000, even when it could detach.
var ErrClientViolation = errors.New("client broke the protocol")

// CloseError is a close frame a client sent: Receive's error wraps it.
type CloseError struct {
	Code int
	Text string
}

func (e *CloseError) Error() string { return fmt.Sprintf("client closed (%d %s)", e.Code, e.Text) }
