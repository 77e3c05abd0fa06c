package supervisor

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
)

// countingRunner is the tests' runner, counting the pools made on it.
type countingRunner struct {
	*sandbox.Runner
	mu   sync.Mutex
	made int
}

func (c *countingRunner) NewPool(log *slog.Logger, tmpl sandbox.Isolation, size int) *sandbox.Pool {
	c.mu.Lock()
	c.made++
	c.mu.Unlock()
	return c.Runner.NewPool(log, tmpl, size)
}

func (c *countingRunner) pools() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.made
}

// Ensure a reload keeps the prepared sandboxes of a policy it leaves as it
// was (read again, so a new *Policy), for that new policy's jobs, and
// replaces those of one it changes; and that a pool is never made once
// Shutdown has closed them.
func TestSupervisor_ReloadKeepsUnchangedPools(t *testing.T) {
	t.Parallel()
	if err := sandbox.Available(); err != nil {
		t.Skipf("needs the sandbox (root with cgroups): %v", err)
	}
	r := &countingRunner{Runner: testRunner}
	cfg := func(pol *policies.Policy) Config {
		return Config{Runner: r, Sandbox: true, Ledger: nil,
			Apps: []App{{Name: "a", Path: "/bin/true", Args: []string{"true"}, Policy: pol}}}
	}
	first := mustPolicy(t, "p", "initiators = 1\n")
	s, err := New(slog.New(slog.DiscardHandler), cfg(first))
	if err != nil {
		t.Fatal(err)
	}
	shut := sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(shut)
	if n := r.pools(); n != 1 {
		t.Fatalf("%d pools at start, want 1", n)
	}
	key := poolKey{"p", appPaths(&App{})}
	same := mustPolicy(t, "p", "initiators = 1\n")
	s.Reload(cfg(same))
	if n := r.pools(); n != 1 {
		t.Errorf("%d pools after a reload that changed nothing, want the one kept", n)
	}
	s.poolMu.Lock()
	if p := s.pools[key]; p == nil || p.pol != same {
		t.Errorf("the kept pool is not for the reloaded policy's jobs: %+v", p)
	}
	s.poolMu.Unlock()
	s.Reload(cfg(mustPolicy(t, "p", "initiators = 1\nmemory = \"96MiB\"\n")))
	if n := r.pools(); n != 2 {
		t.Errorf("%d pools after the policy's memory changed, want a new one (2)", n)
	}
	s.Reload(cfg(mustPolicy(t, "p", "initiators = 2\nmemory = \"96MiB\"\n")))
	if n := r.pools(); n != 3 {
		t.Errorf("%d pools after its initiators changed, want a new one (3)", n)
	}
	shut()
	s.Reload(cfg(mustPolicy(t, "p", "initiators = 3\n")))
	if n := r.pools(); n != 3 {
		t.Errorf("a reload after Shutdown made a pool (%d)", n)
	}
}
