package sandbox

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The server's messages to a job's init: a 4-byte little-endian length,
// then that many bytes of NUL-terminated fields, numbers in decimal. It is
// made for a reader in C (init_linux.c) as much as in Go (RunInit).
//
//	prepare  "prepare" NEWNET UID GID CLEARKEYS N {RESOURCE SOFT HARD}×N
//	         M {KIND A B C D E}×M SECCOMP_FLAGS SECCOMP
//	job      "job" PATH DIR HOSTNAME ARGC ARG×ARGC ENVC ENV×ENVC
//
//	exec     "exec" UID GID SECCOMP_FLAGS SECCOMP, then a job message: from
//	         the Go init to its exec helper
//
// The M groups are the view's mount steps (mountOp); SECCOMP is the filter's
// struct sock_filter array in hex, or empty for none, installed with
// seccomp(2)'s SECCOMP_FLAGS.
// The init's replies are lines: "prepared", "ok", or "error: …".
const maxInitMsgBytes = 4 << 20

// initMsg builds one message field by field.
type initMsg struct {
	b   []byte
	err error
}

func newInitMsg(kind string) *initMsg {
	m := &initMsg{b: make([]byte, 4, 256)}
	return m.str(kind)
}

func (m *initMsg) str(s string) *initMsg {
	if strings.IndexByte(s, 0) >= 0 && m.err == nil {
		m.err = fmt.Errorf("%q contains a NUL byte", s)
	}
	m.b = append(append(m.b, s...), 0)
	return m
}

func (m *initMsg) num(n uint64) *initMsg { return m.str(strconv.FormatUint(n, 10)) }

func (m *initMsg) strs(v []string) *initMsg {
	m.num(uint64(len(v)))
	for _, s := range v {
		m.str(s)
	}
	return m
}

// bytes returns the framed message.
func (m *initMsg) bytes() ([]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
	if len(m.b)-4 > maxInitMsgBytes {
		return nil, fmt.Errorf("init message of %d bytes exceeds %d", len(m.b)-4, maxInitMsgBytes)
	}
	binary.LittleEndian.PutUint32(m.b, uint32(len(m.b)-4))
	return m.b, nil
}

// initFields reads one message's fields; io.EOF means the server is gone.
type initFields struct{ f []string }

func readInitMsg(r io.Reader) (*initFields, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n == 0 || n > maxInitMsgBytes {
		return nil, fmt.Errorf("init message size %d out of range", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	if b[n-1] != 0 {
		return nil, errors.New("init message: last field unterminated")
	}
	return &initFields{f: strings.Split(string(b[:n-1]), "\x00")}, nil
}

var errShortMsg = errors.New("init message: too few fields")

func (m *initFields) str() (string, error) {
	if len(m.f) == 0 {
		return "", errShortMsg
	}
	s := m.f[0]
	m.f = m.f[1:]
	return s, nil
}

func (m *initFields) num() (uint64, error) {
	s, err := m.str()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("init message: bad number %q", s)
	}
	return n, nil
}

// nums fills dst with the next len(dst) numbers.
func (m *initFields) nums(dst []uint64) error {
	for i := range dst {
		n, err := m.num()
		if err != nil {
			return err
		}
		dst[i] = n
	}
	return nil
}

func (m *initFields) strs() ([]string, error) {
	n, err := m.num()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(m.f)) {
		return nil, errShortMsg
	}
	v := m.f[:n:n]
	m.f = m.f[n:]
	return v, nil
}

// prepareMsg encodes a prepareConfig.
func prepareMsg(c *prepareConfig) ([]byte, error) {
	newNet := uint64(0)
	if c.NewNet {
		newNet = 1
	}
	clearKeys := uint64(0)
	if c.ClearUserKeyrings {
		clearKeys = 1
	}
	m := newInitMsg("prepare").num(newNet).num(uint64(c.UID)).num(uint64(c.GID)).num(clearKeys).num(uint64(len(c.Rlimits)))
	for _, rl := range c.Rlimits {
		m.num(uint64(rl.Resource)).num(rl.Soft).num(rl.Hard)
	}
	m.num(uint64(len(c.Ops)))
	for _, op := range c.Ops {
		m.str(op.kind).str(op.a).str(op.b).str(op.c).str(op.d).str(op.e)
	}
	return m.num(uint64(c.SeccompFlags)).str(hex.EncodeToString(c.Seccomp)).bytes()
}

// execMsg encodes what the Go init's exec helper takes besides the job:
// the target's ids and the filter it installs.
func execMsg(uid, gid, flags uint32, filter []byte) ([]byte, error) {
	return newInitMsg("exec").num(uint64(uid)).num(uint64(gid)).num(uint64(flags)).str(hex.EncodeToString(filter)).bytes()
}

// execFields is an exec message.
type execFields struct {
	uid, gid, flags uint32
	filter          []byte
}

func decodeExec(m *initFields) (*execFields, error) {
	if kind, err := m.str(); err != nil || kind != "exec" {
		return nil, fmt.Errorf("exec message: want exec, got %q (%v)", kind, err)
	}
	var nums [3]uint64
	if err := m.nums(nums[:]); err != nil {
		return nil, err
	}
	h, err := m.str()
	if err != nil {
		return nil, err
	}
	x := &execFields{uid: uint32(nums[0]), gid: uint32(nums[1]), flags: uint32(nums[2])}
	if x.filter, err = hex.DecodeString(h); err != nil || len(x.filter) == 0 || len(x.filter)%8 != 0 {
		return nil, errors.New("exec message: bad seccomp filter")
	}
	return x, nil
}

// jobMsg encodes a jobConfig.
func jobMsg(c *jobConfig) ([]byte, error) {
	return newInitMsg("job").str(c.Path).str(c.Dir).str(c.Hostname).strs(c.Args).strs(c.Env).bytes()
}

func decodePrepare(m *initFields) (*prepareConfig, error) {
	var c prepareConfig
	if kind, err := m.str(); err != nil || kind != "prepare" {
		return nil, fmt.Errorf("init message: want prepare, got %q (%v)", kind, err)
	}
	var nums [5]uint64
	if err := m.nums(nums[:]); err != nil {
		return nil, err
	}
	c.NewNet, c.UID, c.GID, c.ClearUserKeyrings = nums[0] != 0, uint32(nums[1]), uint32(nums[2]), nums[3] != 0
	for range nums[4] {
		var rl [3]uint64
		if err := m.nums(rl[:]); err != nil {
			return nil, err
		}
		c.Rlimits = append(c.Rlimits, rlimit{Resource: int(rl[0]), Soft: rl[1], Hard: rl[2]})
	}
	n, err := m.num()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(m.f))/6 { // a count the message cannot hold must not size anything
		return nil, errShortMsg
	}
	for range n {
		var f [6]string
		for i := range f {
			if f[i], err = m.str(); err != nil {
				return nil, err
			}
		}
		c.Ops = append(c.Ops, mountOp{f[0], f[1], f[2], f[3], f[4], f[5]})
	}
	flags, err := m.num()
	if err != nil {
		return nil, err
	}
	c.SeccompFlags = uint32(flags)
	h, err := m.str()
	if err != nil {
		return nil, err
	}
	if c.Seccomp, err = hex.DecodeString(h); err != nil || len(c.Seccomp)%8 != 0 {
		return nil, fmt.Errorf("init message: bad seccomp filter")
	}
	return &c, nil
}

func decodeJob(m *initFields) (*jobConfig, error) {
	var c jobConfig
	if kind, err := m.str(); err != nil || kind != "job" {
		return nil, fmt.Errorf("init message: want job, got %q (%v)", kind, err)
	}
	for _, p := range []*string{&c.Path, &c.Dir, &c.Hostname} {
		s, err := m.str()
		if err != nil {
			return nil, err
		}
		*p = s
	}
	var err error
	if c.Args, err = m.strs(); err != nil {
		return nil, err
	}
	if c.Env, err = m.strs(); err != nil {
		return nil, err
	}
	return &c, nil
}
