package sandbox

import (
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Ensure that Leftovers finds the job cgroups a dead server left under
// its parent, in either cgroup version, and that kill, read and delete
// leave nothing: no process, no cgroup.
func TestLeftovers_KillReadDelete(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			var mount string
			if version == 1 {
				requireV1(t)
			} else {
				mount = requireUnified(t)
			}
			parent := fmt.Sprintf("chimirror-test-left-%d", time.Now().UnixNano())
			leftovers := func() ([]*Leftover, error) {
				if version == 1 {
					return leftovers1(parent)
				}
				return leftovers2(mount, parent)
			}
			t.Cleanup(func() { // if the test failed halfway: leave nothing behind
				left, err := leftovers()
				if err != nil {
					t.Error(err)
				}
				for _, l := range left {
					if l.KillAndWait(5*time.Second) == nil {
						if err := l.Delete(); err != nil {
							t.Error(err)
						}
					}
				}
				if err := removeParent(version, mount, parent); err != nil {
					t.Error(err)
				}
			})
			var cmds []*exec.Cmd
			for i := range 2 {
				name := fmt.Sprintf("%s/JOB%08d.999", parent, i+1)
				var cg jobCgroup
				var err error
				if version == 1 {
					cg, err = newCgroup1(name, nil, false)
				} else {
					cg, err = newCgroup2(mount, name, nil, false)
				}
				if err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command("/bin/sh", "-c", "sleep 0.05; sleep 60 & sleep 60 & wait")
				cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
				fd, err := cg.CloneFD()
				if err != nil {
					t.Fatal(err)
				}
				if fd >= 0 {
					cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				if fd >= 0 {
					syscall.Close(fd)
				} else if err := cg.AddProc(cmd.Process.Pid); err != nil {
					t.Fatal(err)
				}
				cmds = append(cmds, cmd)
			}
			time.Sleep(100 * time.Millisecond) // let the shells fork
			list := func() []*Leftover {
				t.Helper()
				l, err := leftovers()
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			left := list()
			if len(left) != 2 || left[0].Name != "JOB00000001.999" || left[1].Name != "JOB00000002.999" {
				t.Fatalf("leftovers %v", left)
			}
			// The test stands for the dead server's parent (init), which
			// reaps the killed processes: zombies count until reaped.
			waited := make(chan error, len(cmds))
			for _, c := range cmds {
				go func() { waited <- c.Wait() }()
			}
			for _, l := range left {
				if err := l.KillAndWait(5 * time.Second); err != nil {
					t.Fatal(err)
				}
				if _, err := l.Usage(); err != nil {
					t.Fatal(err)
				}
			}
			for range cmds {
				if err := <-waited; err == nil {
					t.Fatal("a job exited by itself instead of being killed")
				}
			}
			for _, l := range left {
				if err := l.Delete(); err != nil {
					t.Fatal(err)
				}
			}
			if again := list(); len(again) != 0 {
				t.Fatalf("after delete: %v", again)
			}
			if err := removeParent(version, mount, parent); err != nil {
				t.Fatal(err)
			}
		})
	}
}
