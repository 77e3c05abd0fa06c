package supervisor

import (
	"path/filepath"
	"testing"

	"github.com/chimirror/chimirror/accounting"
)

// openLedger opens a ledger in a fresh directory; cleanup checks the
// file's consistency and closes it.
func openLedger(t *testing.T) *accounting.Ledger {
	t.Helper()
	l, err := accounting.Open(filepath.Join(t.TempDir(), "ledger.db"), accounting.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Check(); err != nil {
			t.Errorf("ledger check: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}
