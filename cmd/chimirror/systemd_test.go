package main

import (
	"flag"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Ensure LISTEN_* are read as sd_listen_fds(3) reads them: descriptors for
// another process are ignored (and why is said), malformed values and a
// name count that is not the descriptor count are errors.
func TestListenEnvParse(t *testing.T) {
	const pid = 4242
	tests := []struct {
		name    string
		env     listenEnv
		names   []string
		ignored string // a substring; "" for none
		err     string // a substring; "" for none
	}{
		{"nothing", listenEnv{}, nil, "", ""},
		{"names alone", listenEnv{names: "public"}, nil, "", ""},
		{"two named", listenEnv{pid: "4242", fds: "2", names: "public:admin"}, []string{"public", "admin"}, "", ""},
		{"one unnamed", listenEnv{pid: "4242", fds: "1"}, []string{""}, "", ""},
		{"zero", listenEnv{pid: "4242", fds: "0"}, nil, "", ""},
		{"another process", listenEnv{pid: "1", fds: "2", names: "public:admin"}, nil, "LISTEN_PID=1, and this is process 4242", ""},
		{"no LISTEN_PID", listenEnv{fds: "1"}, nil, "without LISTEN_PID", ""},
		{"fds not a number", listenEnv{pid: "4242", fds: "two"}, nil, "", `LISTEN_FDS="two"`},
		{"fds negative", listenEnv{pid: "4242", fds: "-1"}, nil, "", `LISTEN_FDS="-1"`},
		{"pid not a number", listenEnv{pid: "me", fds: "1"}, nil, "", `LISTEN_PID="me"`},
		{"fewer names", listenEnv{pid: "4242", fds: "2", names: "public"}, nil, "", "names 1 descriptors, but LISTEN_FDS=2"},
		{"more names", listenEnv{pid: "4242", fds: "1", names: "public:admin"}, nil, "", "names 2 descriptors, but LISTEN_FDS=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names, ignored, err := tt.env.parse(pid)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names, tt.names) {
				t.Errorf("names %q, want %q", names, tt.names)
			}
			if (tt.ignored == "") != (ignored == "") || !strings.Contains(ignored, tt.ignored) {
				t.Errorf("ignored %q, want %q", ignored, tt.ignored)
			}
		})
	}
}

// Ensure each passed descriptor is given its listener by name, a lone
// unnamed one is the public listener, and every other case is refused
// with the fix (FileDescriptorName=).
func TestFDRoles(t *testing.T) {
	tests := []struct {
		names []string
		roles []string
		err   string
	}{
		{[]string{"public", "admin"}, []string{"public", "admin"}, ""},
		{[]string{"admin", "public"}, []string{"admin", "public"}, ""},
		{[]string{"admin"}, []string{"admin"}, ""},
		{[]string{""}, []string{"public"}, ""},
		{[]string{"unknown"}, []string{"public"}, ""},
		{[]string{"chimirror.socket"}, nil, `fd 3 is named "chimirror.socket", which is not a listener of chimirror's: name its socket unit's with FileDescriptorName=public or FileDescriptorName=admin`},
		{[]string{"public", "web"}, nil, `fd 4 is named "web"`},
		{[]string{"", ""}, nil, "2 descriptors passed and fd 3 has no name"},
		{[]string{"public", "public"}, nil, "fds 3 and 4 are both the public listener"},
		{[]string{"", "admin"}, nil, "fd 3 has no name"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.names, ":"), func(t *testing.T) {
			roles, err := fdRoles(tt.names)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(roles, tt.roles) {
				t.Errorf("roles %q, want %q", roles, tt.roles)
			}
		})
	}
}

// Ensure a passed socket counts as where the config says to listen when it
// is: same port (any for 0) and same address (0.0.0.0 and :: alike; a
// host name is not resolved).
func TestSameListenAddr(t *testing.T) {
	tcp := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		want string
		got  string
		same bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"127.0.0.1:0", "127.0.0.1:41234", true},
		{"127.0.0.1:8080", "127.0.0.1:8081", false},
		{"127.0.0.1:8080", "[::1]:8080", false},
		{"0.0.0.0:8080", "[::]:8080", true},
		{"[::]:8080", "0.0.0.0:8080", true},
		{":8080", "[::]:8080", true},
		{":8080", "127.0.0.1:8080", false},
		{"0.0.0.0:8080", "127.0.0.1:8080", false},
		{"127.0.0.1:8080", "0.0.0.0:8080", false},
		{"[::ffff:127.0.0.1]:8080", "127.0.0.1:8080", true},
		{"localhost:8080", "[::1]:8080", true},
		{"localhost:8080", "[::1]:9090", false},
		{"localhost:http", "127.0.0.1:8080", true},
		{"not an address", "127.0.0.1:8080", false},
	}
	for _, tt := range tests {
		t.Run(tt.want+"/"+tt.got, func(t *testing.T) {
			if got := sameListenAddr(tt.want, tcp(tt.got)); got != tt.same {
				t.Errorf("sameListenAddr(%q, %s) = %v, want %v", tt.want, tt.got, got, tt.same)
			}
		})
	}
}

// Ensure NOTIFY_SOCKET takes what sd_notify(3) takes, a path or an
// abstract name, and refuses the rest by name.
func TestNotifyAddr(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"/run/systemd/notify", true},
		{"@/org/freedesktop/systemd1/notify/123", true},
		{"run/systemd/notify", false},
		{"vsock:2:1234", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := notifyAddr(tt.in)
			if !tt.ok {
				if err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET=\""+tt.in+"\"") {
					t.Fatalf("err %v, want one naming the value", err)
				}
				return
			}
			if err != nil || a.Name != tt.in || a.Net != "unixgram" {
				t.Fatalf("%v %v", a, err)
			}
		})
	}
}

// Ensure each notification is one datagram of the lines systemd reads,
// STATUS= repeats are skipped, and without NOTIFY_SOCKET nothing is sent
// (and nothing fails).
func TestNotifyMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	read := func() string {
		t.Helper()
		if err := conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	sd := &systemd{log: slog.New(slog.NewTextHandler(io.Discard, nil)), notify: &net.UnixAddr{Name: path, Net: "unixgram"}}
	sd.ready(servingStatus(1))
	if got, want := read(), "READY=1\nSTATUS=serving; 1 job running"; got != want {
		t.Errorf("ready: %q, want %q", got, want)
	}
	sd.status(servingStatus(1)) // a repeat: not sent
	sd.status(servingStatus(2))
	if got, want := read(), "STATUS=serving; 2 jobs running"; got != want {
		t.Errorf("status: %q, want %q (the repeat must be skipped)", got, want)
	}
	sd.reloading()
	got := read()
	lines := strings.Split(got, "\n")
	if lines[0] != "RELOADING=1" {
		t.Errorf("reloading: %q, want RELOADING=1 first", got)
	}
	if _, ok := monotonicUsec(); ok && !strings.HasPrefix(lines[len(lines)-1], "MONOTONIC_USEC=") {
		t.Errorf("reloading: %q, want MONOTONIC_USEC=", got)
	}
	sd.stopping("stopping")
	if got, want := read(), "STOPPING=1\nSTATUS=stopping"; got != want {
		t.Errorf("stopping: %q, want %q", got, want)
	}

	off := &systemd{log: sd.log}
	off.ready("x")
	off.stopping("x")
	if ticks, stop := off.statusTicks(); ticks != nil {
		stop()
		t.Error("status ticks without NOTIFY_SOCKET")
	}
	if err := off.close(); err != nil {
		t.Error(err)
	}
}

// Ensure an empty --data-dir is refused, not taken as "the config's".
func TestEmptyDataDir(t *testing.T) {
	for _, tt := range []struct {
		args []string
		err  bool
	}{
		{nil, false},
		{[]string{"--data-dir", "/var/lib/chimirror"}, false},
		{[]string{"--data-dir", ""}, true},
		{[]string{"--data-dir="}, true},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			fs.String("data-dir", "", "")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := emptyDataDir(fs)
			if (err != nil) != tt.err {
				t.Fatalf("err %v, want error: %v", err, tt.err)
			}
			if err != nil && !strings.Contains(err.Error(), "STATE_DIRECTORY") {
				t.Errorf("err %v does not name STATE_DIRECTORY", err)
			}
		})
	}
}
