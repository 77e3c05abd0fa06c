package sandbox

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// Ensure the init messages survive the trip (empty fields, RLIM_INFINITY,
// many arguments) and that malformed ones are refused, not misread.
func TestInitWire(t *testing.T) {
	prep := prepareConfig{NewNet: true, UID: 65534, GID: 65533, TmpSizeBytes: 8 << 20,
		Rlimits: []rlimit{{Resource: 7, Soft: 64, Hard: 64}, {Resource: 3, Soft: ^uint64(0), Hard: ^uint64(0)}}}
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
