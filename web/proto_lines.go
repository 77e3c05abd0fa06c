package web

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/supervisor"
)

// linesProto is the protocol when no sub-protocol is negotiated.
//
// Text apps: each client text message is written to stdin with "\n" added
// (a binary message is written as-is); each stdout line becomes one text
// message without its "\n" (or "\r\n"). A line longer than MaxLineBytes is
// split at that size, on a UTF-8 boundary, into several messages, so memory
// stays bounded and nothing is lost. A line that is not valid UTF-8 is sent
// as a binary message, since text frames must be UTF-8.
//
// Binary apps: messages go to stdin as-is and each stdout read becomes one
// binary message.
//
// Either way stderr is not sent: it is logged with the job ID and counted.
//
// Sequence numbers: none are sent, and the client cannot acknowledge: an
// event counts as acknowledged once written. A reattached connection
// (GET /jobs/ID/attach) goes on from after= (by default where the last
// connection's writes ended) at an event's start, so a line that a cut
// split arrives as two messages.
type linesProto struct {
	*wsConn
	binary  bool
	partial []byte // an unterminated stdout line; never longer than MaxLineBytes
	stderr  stderrLog
}

func (p *linesProto) Receive() (supervisor.Input, error) {
	mt, b, err := p.read()
	if err != nil {
		return supervisor.Input{}, err
	}
	if mt == websocket.TextMessage && !p.binary {
		b = append(b, '\n')
	}
	return supervisor.Input{Kind: supervisor.InputStdin, Data: b}, nil
}

func (p *linesProto) Send(ev supervisor.Event) error {
	b := ev.Data
	if ev.Stream == supervisor.Stderr {
		p.stderr.write(p.log, b)
		return nil
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.binary {
		return p.writeLocked(websocket.BinaryMessage, b)
	}
	p.bc.begin()
	err := p.sendLines(b)
	return errors.Join(err, p.bc.end())
}

func (p *linesProto) sendLines(b []byte) error {
	max := int(p.lim.MaxLineBytes)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i]
		}
		if len(p.partial) == 0 && i >= 0 && len(seg) <= max { // the common case
			if err := p.emitLine(trimCR(seg)); err != nil {
				return err
			}
			b = b[i+1:]
			continue
		}
		if room := max - len(p.partial); len(seg) > room { // over the cap: split
			p.partial = append(p.partial, seg[:room]...)
			b = b[room:]
			if err := p.emitSplit(); err != nil {
				return err
			}
			continue
		}
		p.partial = append(p.partial, seg...)
		if i < 0 {
			return nil // wait for the rest of the line
		}
		b = b[i+1:]
		if err := p.emitLine(trimCR(p.partial)); err != nil {
			return err
		}
		p.resetPartial()
	}
	return nil
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// emitSplit sends a full-size piece of a long line, keeping the bytes of a
// rune it would cut for the next piece.
func (p *linesProto) emitSplit() error {
	cut := runeCut(p.partial, len(p.partial))
	if err := p.emitLine(p.partial[:cut]); err != nil {
		return err
	}
	rest := copy(p.partial, p.partial[cut:])
	p.partial = p.partial[:rest]
	return nil
}

func (p *linesProto) resetPartial() {
	if cap(p.partial) > 4096 {
		p.partial = nil // do not hold a long line's buffer while idle
	} else {
		p.partial = p.partial[:0]
	}
}

// runeCut returns n, or less so that b[:n] does not end inside a UTF-8
// sequence; it never returns 0 for n > 0.
func runeCut(b []byte, n int) int {
	if t := supervisor.IncompleteUTF8Tail(b[:n]); t > 0 && t < n {
		return n - t
	}
	return n
}

func (p *linesProto) emitLine(line []byte) error {
	mt := websocket.TextMessage
	if !utf8.Valid(line) {
		mt = websocket.BinaryMessage
	}
	return p.writeLocked(mt, line)
}

// Flush sends a last line that had no newline, and logs stderr's.
func (p *linesProto) Flush() error {
	p.wmu.Lock()
	var err error
	if len(p.partial) > 0 {
		err = p.emitLine(p.partial)
		p.partial = nil
	}
	p.wmu.Unlock()
	p.stderr.flush(p.log)
	return err
}

func (p *linesProto) Finish(ev supervisor.Event) error { return p.finish(*ev.Exit) }
