package web

import (
	"bytes"
	"log/slog"
)

// stderrLog logs a job's stderr line by line, for protocols that do not send
// it to the client. It is bounded: at most stderrLogLines lines per job, each
// cut at stderrLogLineBytes; later lines are only counted.
type stderrLog struct {
	partial    []byte
	logged     int
	suppressed int
}

const (
	stderrLogLines     = 100
	stderrLogLineBytes = 1024
)

func (s *stderrLog) write(log *slog.Logger, b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			room := stderrLogLineBytes - len(s.partial)
			if len(b) > room {
				b = b[:room]
			}
			s.partial = append(s.partial, b...)
			return
		}
		line := b[:i]
		b = b[i+1:]
		if len(s.partial) > 0 {
			room := stderrLogLineBytes - len(s.partial)
			if len(line) > room {
				line = line[:room]
			}
			line = append(s.partial, line...)
		}
		s.line(log, line)
		s.partial = s.partial[:0]
	}
}

func (s *stderrLog) line(log *slog.Logger, line []byte) {
	if s.logged >= stderrLogLines {
		s.suppressed++
		return
	}
	s.logged++
	if len(line) > stderrLogLineBytes {
		line = line[:stderrLogLineBytes]
	}
	log.Info("stderr", "line", string(line))
}

func (s *stderrLog) flush(log *slog.Logger) {
	if len(s.partial) > 0 {
		s.line(log, s.partial)
		s.partial = nil
	}
	if s.suppressed > 0 {
		log.Info("stderr lines not logged", "count", s.suppressed)
	}
}
