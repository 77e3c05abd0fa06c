package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/supervisor"
)

// ProtoChannel is the channel.chimirror.v1 sub-protocol: binary messages in
// the framing of Kubernetes' v5.channel.k8s.io. The first byte is the channel,
// the rest is the payload:
//
//	0    client→server  stdin bytes
//	1    server→client  stdout bytes
//	2    server→client  stderr bytes
//	3    server→client  exit status, JSON {"code","signal","reason","detail"}; last
//	4    client→server  terminal resize, JSON {"Width":W,"Height":H}, as Kubernetes'
//	6    client→server  a signal name: INT TERM HUP USR1 USR2 KILL (chimirror's own)
//	7    server→client  on a reattached connection only, first: JSON
//	                    {"next": N} and, when the ring no longer holds events
//	                    the client asked for, "gap": {"from", "to"}
//	255  client→server  close stdin (no payload)
//
// Channels 0–4 and 255 mean what they mean to Kubernetes, so its clients
// (kubectl's, client-go's, a browser terminal's) can talk to a job as they
// talk to a container.
//
// Sequence numbers: every frame of channels 1, 2 and 3 is one output event
// of the job, numbered from 1 on the job's first connection. A reattached
// connection (GET /jobs/ID/attach?after=N) starts with channel 7, whose
// "next" is the seq of the next frame of 1, 2 or 3; each one after is the
// one before plus 1. The protocol has no acknowledgement: an event counts
// as acknowledged once it is written to the connection.
const ProtoChannel = "channel.chimirror.v1"

const (
	chanStdin  = 0
	chanStdout = 1
	chanStderr = 2
	chanStatus = 3
	chanResize = 4
	// chanSignal is chimirror's own. Kubernetes numbers its streams from 0
	// up (v5 ends at 4, resize) and closes with 255; 5, the next it would
	// add, is left to it, so the signal channel stays clear of both ends.
	chanSignal = 6
	chanResume = 7
	chanClose  = 255
)

type channelProto struct {
	*wsConn
}

func (p *channelProto) Receive() (supervisor.Input, error) {
	for {
		mt, b, err := p.read()
		if err != nil {
			return supervisor.Input{}, err
		}
		in, deliver, perr := decodeChannel(mt, b)
		switch {
		case perr != nil:
			p.log.Info("ignored client message", "protocol", ProtoChannel, "err", perr)
		case deliver:
			return in, nil
		}
	}
}

// decodeChannel reads one client message. deliver is false for a message
// that is valid but asks nothing of the job: a resize, since a job's
// stdio is pipes and a socket, never a terminal.
func decodeChannel(mt int, b []byte) (in supervisor.Input, deliver bool, err error) {
	if mt != websocket.BinaryMessage || len(b) == 0 {
		return supervisor.Input{}, false, fmt.Errorf("want a binary message starting with a channel byte")
	}
	switch b[0] {
	case chanStdin:
		return supervisor.Input{Kind: supervisor.InputStdin, Data: b[1:]}, true, nil
	case chanClose:
		return supervisor.Input{Kind: supervisor.InputCloseStdin}, true, nil
	case chanResize:
		if err := checkResize(b[1:]); err != nil {
			return supervisor.Input{}, false, fmt.Errorf("channel %d: %w", chanResize, err)
		}
		return supervisor.Input{}, false, nil
	case chanSignal:
		name := strings.TrimSpace(string(b[1:]))
		sig, err := policies.ClientSignal(name)
		if err != nil {
			return supervisor.Input{}, false, fmt.Errorf("channel %d: %w", chanSignal, err)
		}
		return supervisor.Input{Kind: supervisor.InputSignal, Signal: sig}, true, nil
	}
	return supervisor.Input{}, false, fmt.Errorf("channel %d is not an input channel", b[0])
}

// checkResize accepts Kubernetes' TerminalSize, {"Width":W,"Height":H} with
// both of 16 bits, and nothing else.
func checkResize(b []byte) error {
	var size struct{ Width, Height *uint16 }
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&size); err != nil {
		return fmt.Errorf(`want a resize, {"Width":W,"Height":H}: %w`, err)
	}
	if size.Width == nil || size.Height == nil {
		return fmt.Errorf(`want a resize, {"Width":W,"Height":H}: got %q`, b)
	}
	if d.More() {
		return fmt.Errorf(`want one resize, {"Width":W,"Height":H}: got %q`, b)
	}
	return nil
}

func (p *channelProto) Send(ev supervisor.Event) error {
	ch := byte(chanStdout)
	if ev.Stream == supervisor.Stderr {
		ch = chanStderr
	}
	return p.writeFramed(ch, ev.Data)
}

// Resume sends channel 7: the seq of the next frame, and a gap.
func (p *channelProto) Resume(pos supervisor.Position) error {
	m := map[string]any{"next": pos.Next}
	if pos.GapTo > 0 {
		m["gap"] = map[string]uint64{"from": pos.GapFrom, "to": pos.GapTo}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode channel %d: %w", chanResume, err)
	}
	return p.writeFramed(chanResume, b)
}

// writeFramed sends channel byte + payload as one message.
func (p *channelProto) writeFramed(ch byte, b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.writePrefixedLocked(websocket.BinaryMessage, ch, b)
}

// Flush has nothing to send: the channel protocol holds nothing back.
func (p *channelProto) Flush() error { return nil }

func (p *channelProto) Finish(ev supervisor.Event) error {
	err := p.writeFramed(chanStatus, exitStatusJSON(*ev.Exit))
	return errors.Join(err, p.finish(*ev.Exit))
}
