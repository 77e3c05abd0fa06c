package web

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// refusalLog logs refused handshakes at info level, one line each, at most
// burst lines per window; beyond that they are counted, and the next line
// logged says how many were left out and of which statuses. A flood of
// bad tokens costs a few lines a second, never the log.
type refusalLog struct {
	log    *slog.Logger
	burst  int
	window time.Duration

	mu         sync.Mutex
	start      time.Time   // of the current window
	logged     int         // lines in the current window
	suppressed map[int]int // status → refusals not logged since the last line
}

func newRefusalLog(log *slog.Logger) *refusalLog {
	return &refusalLog{log: log, burst: 10, window: time.Second, suppressed: make(map[int]int)}
}

// refused records the refusal of r with status and msg.
func (l *refusalLog) refused(r *http.Request, status int, msg string) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.start) >= l.window {
		l.start, l.logged = now, 0
	}
	if l.logged >= l.burst {
		l.suppressed[status]++
		l.mu.Unlock()
		return
	}
	l.logged++
	var left map[int]int
	if len(l.suppressed) > 0 {
		left, l.suppressed = l.suppressed, make(map[int]int)
	}
	l.mu.Unlock()
	attrs := []any{"status", status, "reason", msg, "remote", r.RemoteAddr, "path", r.URL.EscapedPath()}
	if left != nil {
		n, by := 0, make([]string, 0, len(left))
		for _, st := range slices.Sorted(maps.Keys(left)) {
			n += left[st]
			by = append(by, fmt.Sprintf("%d:%d", st, left[st]))
		}
		attrs = append(attrs, "suppressed", n, "suppressed_by_status", strings.Join(by, ","))
	}
	l.log.Info("refused", attrs...)
}
