package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/chimirror/chimirror/web"
)

// adminTokenFile holds the generated admin token, in the data dir.
const adminTokenFile = "admin.token"

// adminTokens is who may use the console and the admin API: the tokens in
// admin_tokens_sha256 ("LABEL:HEX" or just HEX), or, when none are
// configured, one generated on the first run and kept, mode 0600, in
// DATA_DIR/admin.token (labelled "admin"). A token generated now is also
// returned as fresh, for the operator's terminal; it is never logged.
func adminTokens(cfg *config) (_ []web.AdminToken, fresh string, _ error) {
	if len(cfg.AdminTokens) > 0 {
		return cfg.AdminTokens, "", nil
	}
	if err := checkTokenFile(cfg.DataDir); err != nil {
		return nil, "", err
	}
	tok, err := readAdminToken(cfg.DataDir)
	if err != nil {
		return nil, "", err
	}
	if tok != "" {
		return []web.AdminToken{{Label: "admin", SHA256: sha256.Sum256([]byte(tok))}}, "", nil
	}
	path := filepath.Join(cfg.DataDir, adminTokenFile)
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, "", err
	}
	tok = hex.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("write admin token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		return nil, "", errors.Join(fmt.Errorf("write admin token: %w", err), f.Close())
	}
	if err := f.Close(); err != nil {
		return nil, "", fmt.Errorf("write admin token: %w", err)
	}
	return []web.AdminToken{{Label: "admin", SHA256: sha256.Sum256([]byte(tok))}}, tok, nil
}

// checkTokenFile refuses a generated token file the server would not
// have written: another user's, or one others may read. Such a token may
// be known to someone else.
func checkTokenFile(dataDir string) error {
	path := filepath.Join(dataDir, adminTokenFile)
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	owner, _, known := fileIDs(st)
	switch {
	case !st.Mode().IsRegular():
		return fmt.Errorf("admin token file %s is not a regular file: delete it to get a new token", path)
	case known && int(owner) != os.Geteuid():
		return fmt.Errorf("admin token file %s belongs to uid %d, not to this server: someone else may know it; delete it to get a new token", path, owner)
	case st.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("admin token file %s is open to other users (mode %#o): someone else may know it; delete it to get a new token", path, st.Mode().Perm())
	}
	return nil
}

// readAdminToken returns the generated admin token kept in dataDir, or ""
// if there is none yet. An empty or unreadable file is an error.
func readAdminToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, adminTokenFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin token file %s is empty: delete it to get a new token", path)
	}
	return tok, nil
}

// tokenHint says where the operator finds the token.
func tokenHint(cfg *config) string {
	if len(cfg.AdminTokens) > 0 {
		return "log in with a token from admin_tokens_sha256"
	}
	return "log in with the token in " + filepath.Join(cfg.DataDir, adminTokenFile)
}
