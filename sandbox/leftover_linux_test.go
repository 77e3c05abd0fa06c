package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
)

// Ensure that Leftovers finds the job cgroups a dead server left under
// its parent, in either cgroup version, and that kill, read and delete
// leave nothing: no process, no cgroup.
func TestLeftovers_KillReadDelete(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			mount, parent, leftovers := leftoverScene(t, version, "left")
			var cmds []*exec.Cmd
			for i := range 2 {
				cg := newLeftoverCgroup(t, version, mount, fmt.Sprintf("%s/JOB%08d.999", parent, i+1))
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
				if !killLeftover(t, l) {
					t.Fatalf("%s: live tasks after its kill", l.Path())
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

// killLeftover kills l and reports whether it holds no live task within 5s.
func killLeftover(t *testing.T, l *Leftover) bool {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if err := l.Kill(); err != nil {
			t.Error(err)
			return false
		}
		live, err := l.Live()
		if err != nil {
			t.Error(err)
			return false
		}
		if !live {
			return true
		}
	}
	return false
}

// Ensure a leftover that a dying server froze mid-kill (v1 freezer.state
// FROZEN, v2 cgroup.freeze 1, SIGKILL pending) is killed, and that it is
// done, and deletable, once its tasks have died, although their zombie
// waits for a parent that does not reap it yet: the test stands for a
// foreign PID 1, which reaps only after the check. pids.current still
// counts the zombie then, which is what made a server's restart sweep
// wait seconds per cgroup.
func TestLeftovers_FrozenAndUnreaped(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			mount, parent, leftovers := leftoverScene(t, version, "frozen")
			cg := newLeftoverCgroup(t, version, mount, parent+"/JOB00000001.999")
			cmd := exec.Command("/bin/sh", "-c", "sleep 60 & sleep 60 & echo up; wait")
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
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
			reaped := false
			t.Cleanup(func() { // before leftoverScene's (cleanups run last first)
				if !reaped {
					left, err := leftovers()
					if err != nil {
						t.Error(err)
					}
					for _, l := range left { // thaws what the test froze, so the kill lands
						killLeftover(t, l)
					}
					if err := cmd.Process.Kill(); err != nil {
						t.Log(err)
					}
					if err := cmd.Wait(); err == nil {
						t.Error("the job exited by itself")
					}
				}
			})
			if fd >= 0 {
				syscall.Close(fd)
			} else if err := cg.AddProc(cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 3)
			if _, err := out.Read(buf); err != nil || string(buf) != "up\n" {
				t.Fatalf("job said %q: %v", buf, err)
			}
			// The dying server: freeze, then SIGKILL every task, then die. On
			// v2 a fatal signal wakes a frozen task, so there the server died
			// between the freeze and the kill.
			var dir, freeze, frozen string
			if version == 1 {
				dirs := cg.(*cgroup1Job).dirs
				dir = dirs[cgroup1.Pids]
				freeze, frozen = filepath.Join(dirs[cgroup1.Freezer], "freezer.state"), "FROZEN"
			} else {
				dir = filepath.Join(mount, cg.Path())
				freeze, frozen = filepath.Join(dir, "cgroup.freeze"), "1"
			}
			if err := os.WriteFile(freeze, []byte(frozen), 0); err != nil {
				t.Fatal(err)
			}
			if version == 1 { // FREEZING until every task is stopped
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
					b, err := os.ReadFile(freeze)
					if err != nil {
						t.Fatal(err)
					}
					if strings.TrimSpace(string(b)) == "FROZEN" {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("freezer.state %q after 5s", b)
					}
				}
			}
			procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range strings.Fields(string(procs)) {
				if version == 2 {
					break
				}
				pid, _ := strconv.Atoi(f)
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(50 * time.Millisecond)
			// Which of the frozen tasks a SIGKILL still ends varies (one caught
			// mid-fork, say); the init at least is left.
			if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err != nil || len(strings.Fields(string(b))) == 0 {
				t.Fatalf("frozen tasks: %q %v; want frozen tasks still there", b, err)
			}

			left, err := leftovers()
			if err != nil || len(left) != 1 {
				t.Fatalf("leftovers %v %v", left, err)
			}
			l := left[0]
			if !killLeftover(t, l) {
				t.Fatal("live tasks after the kill of a frozen leftover")
			}
			if version == 1 { // v2's pids.current needs the pids controller, absent on a hybrid host
				if cur, err := readInt(filepath.Join(dir, "pids.current")); err != nil || cur == 0 {
					t.Fatalf("pids.current %d %v: the test needs the init's zombie still counted", cur, err)
				}
			}
			if err := l.Delete(); err != nil {
				t.Fatalf("delete with only a zombie charged to it: %v", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("cgroup still there: %v", err)
			}
			reaped = true
			if err := cmd.Wait(); err == nil {
				t.Fatal("the job exited by itself instead of being killed")
			}
		})
	}
}

// Ensure a v2 leftover on a kernel without cgroup.kill (before 5.14) falls
// back to killing its listed tasks. A v1 pids cgroup, which has
// cgroup.procs and no cgroup.kill, stands for one: cgroupfs answers the
// write of a file it lacks with EACCES, which once read as a failure.
func TestLeftovers_KillWithoutCgroupKill(t *testing.T) {
	requireV1(t)
	dir := filepath.Join(cgroupRoot, "pids", fmt.Sprintf("chimirror-test-nokill-%d", time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Error(err)
		}
	})
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Error(err)
		}
		<-done
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	l := &Leftover{Name: "JOB00000001.999", path: filepath.Base(dir), v2: dir}
	if err := l.Kill(); err != nil {
		t.Fatalf("kill without cgroup.kill: %v", err)
	}
	select {
	case err := <-done:
		done <- err
		if err == nil {
			t.Fatal("sleep exited by itself")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the listed task was not killed")
	}
}

// leftoverScene makes a cgroup parent of the test's own (its name has
// kind in it) in cgroup version v, skipping where the host has no such
// cgroups, and lists its leftovers. A cleanup kills and removes whatever
// is left under it, and the parent.
func leftoverScene(t *testing.T, version int, kind string) (mount, parent string, list func() ([]*Leftover, error)) {
	t.Helper()
	if version == 1 {
		requireV1(t)
	} else {
		mount = requireUnified(t)
	}
	parent = fmt.Sprintf("chimirror-test-%s-%d", kind, time.Now().UnixNano())
	list = func() ([]*Leftover, error) {
		if version == 1 {
			return leftovers1(parent)
		}
		return leftovers2(mount, parent)
	}
	t.Cleanup(func() { // if the test failed halfway: leave nothing behind
		left, err := list()
		if err != nil {
			t.Error(err)
		}
		for _, l := range left {
			if killLeftover(t, l) {
				if err := l.Delete(); err != nil {
					t.Error(err)
				}
			}
		}
		if err := removeParent(version, mount, parent); err != nil {
			t.Error(err)
		}
	})
	return mount, parent, list
}

// newLeftoverCgroup makes the job cgroup name, with no limits, for a
// leftoverScene to find (and remove).
func newLeftoverCgroup(t *testing.T, version int, mount, name string) jobCgroup {
	t.Helper()
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
	return cg
}
