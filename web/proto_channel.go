package web

import (
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
//	4    client→server  a signal name: INT TERM HUP USR1 USR2 KILL (chimirror's)
//	255  client→server  close stdin (no payload)
const ProtoChannel = "channel.chimirror.v1"

const (
	chanStdin  = 0
	chanStdout = 1
	chanStderr = 2
	chanStatus = 3
	chanSignal = 4
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
		in, perr := decodeChannel(mt, b)
		if perr == nil {
			return in, nil
		}
		p.log.Info("ignored client message", "protocol", ProtoChannel, "err", perr)
	}
}

func decodeChannel(mt int, b []byte) (supervisor.Input, error) {
	if mt != websocket.BinaryMessage || len(b) == 0 {
		return supervisor.Input{}, fmt.Errorf("want a binary message starting with a channel byte")
	}
	switch b[0] {
	case chanStdin:
		return supervisor.Input{Kind: supervisor.InputStdin, Data: b[1:]}, nil
	case chanClose:
		return supervisor.Input{Kind: supervisor.InputCloseStdin}, nil
	case chanSignal:
		name := strings.TrimSpace(string(b[1:]))
		sig, err := policies.ClientSignal(name)
		if err != nil {
			return supervisor.Input{}, fmt.Errorf("channel 4: %w", err)
		}
		return supervisor.Input{Kind: supervisor.InputSignal, Signal: sig}, nil
	}
	return supervisor.Input{}, fmt.Errorf("channel %d is not an input channel", b[0])
}

func (p *channelProto) Send(s supervisor.Stream, b []byte) error {
	ch := byte(chanStdout)
	if s == supervisor.Stderr {
		ch = chanStderr
	}
	return p.writeFramed(ch, b)
}

// writeFramed sends channel byte + payload as one message.
func (p *channelProto) writeFramed(ch byte, b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.writePrefixedLocked(websocket.BinaryMessage, ch, b)
}

// Flush has nothing to send: the channel protocol holds nothing back.
func (p *channelProto) Flush() error { return nil }

func (p *channelProto) Finish(e supervisor.Exit) error {
	err := p.writeFramed(chanStatus, exitStatusJSON(e))
	return errors.Join(err, p.finish(e))
}
