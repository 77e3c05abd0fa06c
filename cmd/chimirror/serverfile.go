package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// serverFile, in the data dir, says where the server that holds it
// listens: the CLI's jobs, job, cancel and acct read it, so they find a
// server started with --admin-listen or on port 0 without being told.
// It is written once the listeners are up and removed at a clean stop; a
// stale one (the server crashed) is harmless: nothing answers there, and
// the CLI falls back to the ledger file.
const serverFile = "server.json"

type serverInfo struct {
	Admin     string `json:"admin"`      // host:port of the admin listener
	AdminURL  string `json:"admin_url"`  // the console, scheme and base path included
	TokenFile string `json:"token_file"` // the generated admin token, when there is one
	PID       int    `json:"pid"`
}

// writeServerFile records info in dataDir (mode 0600, replaced whole).
func writeServerFile(dataDir string, info serverInfo) (retErr error) {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dataDir, serverFile+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", serverFile, err)
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, os.Remove(tmp.Name()))
		}
	}()
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return errors.Join(fmt.Errorf("write %s: %w", serverFile, err), tmp.Close())
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", serverFile, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dataDir, serverFile)); err != nil {
		return fmt.Errorf("write %s: %w", serverFile, err)
	}
	return nil
}

// removeServerFile forgets where the server listened (it is stopping).
func removeServerFile(dataDir string) error {
	if err := os.Remove(filepath.Join(dataDir, serverFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", serverFile, err)
	}
	return nil
}

// readServerFile is what the server in dataDir recorded, if anything.
func readServerFile(dataDir string) (serverInfo, bool) {
	var info serverInfo
	b, err := os.ReadFile(filepath.Join(dataDir, serverFile))
	if err != nil || json.Unmarshal(b, &info) != nil || info.Admin == "" {
		return serverInfo{}, false
	}
	return info, true
}
