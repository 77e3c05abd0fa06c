//go:build !linux

package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/chimirror/chimirror/sandbox"
)

// bornInUnit does nothing where there are no cgroups (see the Linux one).
func bornInUnit(*testing.T, *exec.Cmd, string, []string) {}

// jobCgroupGlobs are the v1 hierarchies' patterns (see the Linux one).
func jobCgroupGlobs(_, instance string) []string {
	var globs []string
	for _, sub := range []string{"pids", "memory", "cpu", "freezer", "unified"} {
		globs = append(globs, filepath.Join("/sys/fs/cgroup", sub, sandbox.DefaultCgroupParent, instance, "*"))
	}
	return globs
}
