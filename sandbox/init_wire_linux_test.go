package sandbox

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// Ensure the init messages survive the trip (empty fields, RLIM_INFINITY,
// many arguments) and that malformed ones are refused, not misread.
func TestInitWire(t *testing.T) {
	prep := prepareConfig{NewNet: true, UID: 65534, GID: 65533,
		Rlimits: []rlimit{{Resource: 7, Soft: 64, Hard: 64}, {Resource: 3, Soft: ^uint64(0), Hard: ^uint64(0)}},
		Ops: []mountOp{{"mount", "tmpfs", "/newroot/tmp", "tmpfs", "6", "mode=1777"}, {"file", "", "/newroot/etc/passwd", "420", "", "root:x:0:0::/:\n"},
			{"mkdir", "", "/newroot/a b", "493", "", ""}},
		Seccomp: []byte{0x06, 0, 0, 0, 0, 0, 0xff, 0x7f}, SeccompFlags: 4, ClearUserKeyrings: true}
	job := jobConfig{Path: "/bin/sh", Args: []string{"sh", "-c", "", "x y"}, Env: nil, Dir: "", Hostname: "JOB00000001"}
	b, err := prepareMsg(&prep)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := jobMsg(&job)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(append(b, jb...))
	m, err := readInitMsg(r)
	if err != nil {
		t.Fatal(err)
	}
	gotPrep, err := decodePrepare(m)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*gotPrep, prep) {
		t.Errorf("prepare: got %+v, want %+v", *gotPrep, prep)
	}
	if m, err = readInitMsg(r); err != nil {
		t.Fatal(err)
	}
	gotJob, err := decodeJob(m)
	if err != nil {
		t.Fatal(err)
	}
	job.Env = []string{}
	if !reflect.DeepEqual(*gotJob, job) {
		t.Errorf("job: got %+v, want %+v", *gotJob, job)
	}

	frame := func(payload string) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
		return append(b, payload...)
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"empty", frame(""), "out of range"},
		{"too big", binary.LittleEndian.AppendUint32(nil, maxInitMsgBytes+1), "out of range"},
		{"unterminated", frame("job\x00/bin/sh"), "unterminated"},
		{"too few fields", frame("job\x00/bin/sh\x00\x00host\x002\x00sh\x00"), "too few fields"},
		{"bad count", frame("job\x00/bin/sh\x00\x00host\x00two\x00"), "bad number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := readInitMsg(bytes.NewReader(tc.msg))
			if err == nil {
				_, err = decodeJob(m)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	big := strings.Repeat("x", maxInitMsgBytes)
	if _, err := jobMsg(&jobConfig{Path: "/bin/true", Args: []string{big}}); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("oversized job: %v", err)
	}
}

// Ensure each init refuses malformed messages from the server with a clear
// error and exit 112, running nothing: the C parser sees the same hostile
// frames as the Go one.
func TestInitWire_InitsRefuseMalformed(t *testing.T) {
	requireRoot(t) // namespaces; no cgroup
	frame := func(payload string) []byte {
		return append(binary.LittleEndian.AppendUint32(nil, uint32(len(payload))), payload...)
	}
	prep, err := prepareMsg(&prepareConfig{NewNet: true, UID: 65534, GID: 65534})
	if err != nil {
		t.Fatal(err)
	}
	inits := []string{goInitArg}
	if haveCInit {
		inits = append(inits, InitArg)
	}
	for _, arg := range inits {
		for _, tc := range []struct {
			name     string
			prepared bool // send a good prepare first
			msg      []byte
			want     string
		}{
			{"empty frame", false, frame(""), "out of range"},
			{"oversized frame", false, binary.LittleEndian.AppendUint32(nil, maxInitMsgBytes+1), "out of range"},
			{"wrong kind", false, frame("job\x00"), "prepare"},
			{"unterminated", true, frame("job\x00/bin/true"), "unterminated"},
			{"count beyond the message", true, frame("job\x00/bin/true\x00\x00h\x004000000000\x00true\x00"), "too few fields"},
			{"bad number", true, frame("job\x00/bin/true\x00\x00h\x00x\x00"), "bad number"},
		} {
			t.Run(arg+"/"+tc.name, func(t *testing.T) {
				sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				parent := os.NewFile(uintptr(sp[0]), "sync")
				defer parent.Close()
				// Namespaces of its own: a good prepare mounts /proc and
				// brings lo up, which must not touch the host's.
				pid, err := syscall.ForkExec("/proc/self/exe", []string{"init-test", arg}, &syscall.ProcAttr{
					Files: []uintptr{0, 1, 2, uintptr(sp[1])},
					Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL,
						Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET},
				})
				syscall.Close(sp[1])
				if err != nil {
					t.Fatal(err)
				}
				var ws syscall.WaitStatus
				defer func() {
					if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
						t.Error(err)
					}
					if ws.ExitStatus() != 112 {
						t.Errorf("init exit status %v, want 112", ws)
					}
				}()
				br := bufio.NewReader(parent)
				if tc.prepared {
					if _, err := parent.Write(prep); err != nil {
						t.Fatal(err)
					}
					if line, err := br.ReadString('\n'); line != "prepared\n" {
						t.Fatalf("after prepare: %q %v", line, err)
					}
				}
				if _, err := parent.Write(tc.msg); err != nil {
					t.Fatal(err)
				}
				line, err := br.ReadString('\n')
				if !strings.HasPrefix(line, "error: ") || !strings.Contains(line, tc.want) {
					t.Fatalf("reply %q (%v), want an error containing %q", line, err, tc.want)
				}
			})
		}
	}
}
