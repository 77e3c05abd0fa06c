package web

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chimirror/chimirror/supervisor"
)

func tenant(name, token string, max int) supervisor.Tenant {
	return supervisor.Tenant{Name: name, TokenSHA256: sha256.Sum256([]byte(token)), MaxSessions: max}
}

// Ensure tenants: a token names the tenant (header or ?token=), a bad or
// missing one is 401 and a full tenant 429, both before the upgrade and
// with no process started; the job knows its tenant but never the token.
func TestTenants(t *testing.T) {
	t.Parallel()
	var e ends
	cfg := supervisor.Config{OnEnd: e.hook, Apps: []supervisor.App{
		{Name: "cat", Path: "/bin/cat", Args: []string{"cat"}},
		shApp("whoami", `echo "$CHIMIRROR_TENANT|$QUERY_STRING|$REQUEST_URI|$HTTP_AUTHORIZATION"`),
	}, Tenants: []supervisor.Tenant{tenant("alice", "alice-secret-0123456789abcdef0123456789", 1), tenant("bob", "bob-secret-0123456789abcdef0123456789", 0)}}
	s := startServer(t, cfg, Options{})
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	ws, err := s.tryDial("/apps/whoami?x=1&token=alice-secret-0123456789abcdef0123456789", nil, ProtoV1)
	if err != nil {
		t.Fatal(err)
	}
	got := readSession(t, ws, 5*time.Second)
	ws.Close()
	if out := strings.TrimSpace(string(got.stdout)); out != "alice|x=1|/apps/whoami?x=1|" {
		t.Fatalf("job sees %q: want its tenant, and no token anywhere", out)
	}

	// The slot is free once the server has released the first job, a moment
	// after the client saw its /exit.
	waitFor(t, 5*time.Second, "the first job released", func() bool { return s.sup.Running() == 0 })
	held, err := s.tryDial("/apps/cat", bearer("alice-secret-0123456789abcdef0123456789")) // alice's only slot
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	started := s.sup.Started()
	for _, tc := range []struct {
		name   string
		path   string
		hdr    http.Header
		status int
	}{
		{"no token", "/apps/cat", nil, http.StatusUnauthorized},
		{"bad token", "/apps/cat", bearer("nope"), http.StatusUnauthorized},
		{"bad query token", "/apps/cat?token=nope", nil, http.StatusUnauthorized},
		{"tenant at its cap", "/apps/cat", bearer("alice-secret-0123456789abcdef0123456789"), http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.tryDial(tc.path, tc.hdr)
			var de *dialError
			if !errors.As(err, &de) || de.status != tc.status {
				t.Fatalf("got %v, want %d", err, tc.status)
			}
			if tc.status == http.StatusUnauthorized && !strings.HasPrefix(de.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
		})
	}
	if s.sup.Started() != started {
		t.Fatalf("refused requests started %d processes", s.sup.Started()-started)
	}
	// bob has no cap of his own.
	for i := 0; i < 2; i++ {
		ws, err := s.tryDial("/apps/cat", bearer("bob-secret-0123456789abcdef0123456789"))
		if err != nil {
			t.Fatalf("bob #%d: %v", i, err)
		}
		defer ws.Close()
	}
	for _, j := range s.sup.Jobs() {
		if j.Tenant != "alice" && j.Tenant != "bob" {
			t.Errorf("job %s has tenant %q", j.ID, j.Tenant)
		}
	}
}

// Ensure a tenant's policy replaces the app's.
func TestTenantPolicy(t *testing.T) {
	t.Parallel()
	requireSandbox(t)
	var e ends
	strict := mustPolicy(t, "tiny", `wall_time = "300ms"`)
	ten := tenant("carol", "carol-secret-0123456789abcdef0123456789", 0)
	ten.Policy = strict
	loose := mustPolicy(t, "loose", `wall_time = "1h"`)
	s := startServer(t, supervisor.Config{Sandbox: true, OnEnd: e.hook, Tenants: []supervisor.Tenant{ten},
		Apps: []supervisor.App{boxed(shApp("sleep", `sleep 30`), loose)}}, Options{})
	ws, err := s.tryDial("/apps/sleep", http.Header{"Authorization": {"Bearer carol-secret-0123456789abcdef0123456789"}}, ProtoV1)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	got := readSession(t, ws, 10*time.Second)
	if got.exit == nil || got.exit.Reason != "wall-time" {
		t.Fatalf("exit %+v: the tenant's 300ms wall_time should have ended it", got.exit)
	}
}
