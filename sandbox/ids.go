package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// IDRange is a run of host ids: First, First+1, …, First+Count-1.
type IDRange struct {
	First, Count uint32
}

// Last is the range's last id.
func (r IDRange) Last() uint32 { return r.First + r.Count - 1 }

func (r IDRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last()) }

// Contains reports whether id is in the range.
func (r IDRange) Contains(id uint32) bool { return r.Count > 0 && id >= r.First && id <= r.Last() }

// Overlaps reports whether the two ranges share an id.
func (r IDRange) Overlaps(o IDRange) bool {
	return r.Count > 0 && o.Count > 0 && r.First <= o.Last() && o.First <= r.Last()
}

// Defaults of RunnerOptions, systemd's: the ids it gives DynamicUser=
// services, and the block of ids it gives containers' user namespaces.
var (
	DefaultDynamicIDs       = IDRange{First: 61184, Count: 65519 - 61184 + 1}
	DefaultUserNamespaceIDs = IDRange{First: 524288, Count: 1879048191 - 524288 + 1}
)

// RunnerOptions are the host ids a Runner may give sandboxed jobs. Zero
// ranges take the defaults (DefaultDynamicIDs, DefaultUserNamespaceIDs).
// Check them against the host's accounts first (CheckIDRange): no id of
// them may belong to anyone else.
type RunnerOptions struct {
	// DynamicIDs are the uids (and the same gids) of jobs with DynamicUser:
	// one per running job.
	DynamicIDs IDRange
	// UserNamespaceIDs is cut into blocks of UserNamespaceBlock ids, one
	// per running user-namespaced job.
	UserNamespaceIDs IDRange
}

// UserNamespaceBlock is how many host ids one user-namespaced job holds:
// ids 0–65535 inside.
const UserNamespaceBlock = 65536

// ErrNoIDs is returned by Start and Prepare when every id of a range is
// held by a running job.
var ErrNoIDs = errors.New("every id of the range is in use")

// idPool hands out blocks of a range, one per running job. A block comes
// back only once its job is gone (see Process.Close); every block is used
// once before any is used again, and then the one freed longest ago comes
// first, so an id rests as long as the range allows before another job
// gets it.
type idPool struct {
	what  string  // for errors: "dynamic uid"
	r     IDRange // the whole range
	block uint32  // ids per block

	mu     sync.Mutex
	fresh  uint32   // blocks never handed out: fresh…blocks-1
	freed  []uint32 // returned blocks, oldest first, from head
	head   int
	blocks uint32
}

func newIDPool(what string, r IDRange, block uint32) *idPool {
	return &idPool{what: what, r: r, block: block, blocks: r.Count / block}
}

// get returns the first id of a free block: one never used yet, else the
// one that has rested longest.
func (p *idPool) get() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fresh < p.blocks {
		b := p.fresh
		p.fresh++
		return p.r.First + b*p.block, nil
	}
	if p.head < len(p.freed) {
		b := p.freed[p.head]
		p.head++
		if p.head == len(p.freed) {
			p.freed, p.head = p.freed[:0], 0
		}
		return p.r.First + b*p.block, nil
	}
	return 0, fmt.Errorf("%s: %w (%s holds %d jobs at once)", p.what, ErrNoIDs, p.r, p.blocks)
}

// put returns the block that starts at id.
func (p *idPool) put(id uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.head > 0 && p.head >= len(p.freed)/2 { // keep the queue's memory bounded by the range
		p.freed = append(p.freed[:0], p.freed[p.head:]...)
		p.head = 0
	}
	p.freed = append(p.freed, (id-p.r.First)/p.block)
}

// inUse is how many blocks running jobs hold.
func (p *idPool) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int(p.fresh) - (len(p.freed) - p.head)
}

// CheckIDRange reports the accounts of /etc/passwd and /etc/group whose ids
// fall in r, one error each (a job given such an id would be that
// account), and any file it could not read; nil when there are none.
func CheckIDRange(r IDRange) []error {
	var errs []error
	for _, f := range []struct{ file, what string }{{"/etc/passwd", "user"}, {"/etc/group", "group"}} {
		clash, err := idsIn(f.file, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range clash {
			errs = append(errs, fmt.Errorf("%s %q in %s has id %d, inside %s", f.what, c.name, f.file, c.id, r))
		}
	}
	return errs
}

type account struct {
	name string
	id   uint32
}

// idsIn lists the entries of a passwd- or group-format file with ids in r.
func idsIn(file string, r IDRange) ([]account, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseIDsIn(f, file, r)
}

func parseIDsIn(rd io.Reader, file string, r IDRange) ([]account, error) {
	var out []account
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		id, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil {
			continue // NIS "+" lines and the like carry no id
		}
		if r.Contains(uint32(id)) {
			out = append(out, account{fields[0], uint32(id)})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return out, nil
}
