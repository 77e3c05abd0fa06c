package web

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Ensure refusals are logged one line each with the reason and the client,
// and a flood is cut to the burst, the rest summarised in the next line.
func TestRefusalLog(t *testing.T) {
	var buf bytes.Buffer
	l := newRefusalLog(slog.New(slog.NewTextHandler(&buf, nil)))
	l.window = time.Hour // one window for the whole flood
	r := httptest.NewRequest("GET", "/apps/cat", nil)
	r.RemoteAddr = "192.0.2.7:4242"
	for range 100 {
		l.refused(r, 401, "unknown tenant token")
	}
	l.refused(r, 429, "too many sessions")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != l.burst {
		t.Fatalf("%d lines for 101 refusals, want the burst of %d:\n%s", len(lines), l.burst, buf.String())
	}
	if !strings.Contains(lines[0], `msg=refused status=401 reason="unknown tenant token" remote=192.0.2.7:4242 path=/apps/cat`) {
		t.Fatalf("first line %q", lines[0])
	}
	buf.Reset()
	l.start = time.Time{} // the next window
	l.refused(r, 403, "origin not allowed")
	if got := buf.String(); !strings.Contains(got, "status=403") || !strings.Contains(got, "suppressed=91") ||
		!strings.Contains(got, "suppressed_by_status=401:90,429:1") {
		t.Fatalf("the line after the flood: %q, want 91 suppressed (90 of 401, 1 of 429)", got)
	}
}
