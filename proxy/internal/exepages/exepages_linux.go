package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Drop gives back the resident pages of the executable's read-only,
// private mappings that hold no private copy of a page, and says how
// many bytes of them were resident.
func Drop() (Result, error) {
	var res Result
	maps, err := Mappings()
	if err != nil {
		return res, err
	}
	for _, m := range maps {
		if m.Private > 0 || m.Resident == 0 {
			continue
		}
		// Addresses from /proc, not Go pointers: the raw system call.
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.Start, m.End-m.Start, unix.MADV_DONTNEED); e != 0 {
			return res, fmt.Errorf("exepages: madvise %x-%x: %w", m.Start, m.End, e)
		}
		res.Mappings++
		res.Resident += m.Resident
	}
	return res, nil
}

// Mappings lists the executable's private mappings that are not
// writable (its code and read-only data), from /proc/self/smaps.
func Mappings() ([]Mapping, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("exepages: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("exepages: %w", err)
	}
	defer f.Close()
	maps, err := parseSmaps(f, exe)
	if err != nil {
		return nil, fmt.Errorf("exepages: reading /proc/self/smaps: %w", err)
	}
	return maps, nil
}

// parseSmaps reads smaps text and keeps path's private, non-writable
// mappings with their Rss and Anonymous sizes.
func parseSmaps(r io.Reader, path string) ([]Mapping, error) {
	var out []Mapping
	keep := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if m, header, ok := parseHeader(line, path); header {
			keep = ok
			if ok {
				out = append(out, m)
			}
			continue
		}
		if !keep {
			continue
		}
		cur := &out[len(out)-1]
		if v, ok := field(line, "Rss:"); ok {
			cur.Resident = v
		} else if v, ok := field(line, "Anonymous:"); ok {
			cur.Private = v
		}
	}
	return out, sc.Err()
}

// parseHeader parses a line that starts a mapping ("start-end perms
// offset dev inode [path]"; header reports whether it is one), keeping it
// (ok) when it maps path privately without write permission.
func parseHeader(line []byte, path string) (m Mapping, header, ok bool) {
	f := bytes.Fields(line)
	if len(f) < 5 || bytes.HasSuffix(f[0], []byte(":")) {
		return m, false, false
	}
	lo, hi, found := bytes.Cut(f[0], []byte("-"))
	if !found {
		return m, false, false
	}
	start, err1 := strconv.ParseUint(string(lo), 16, 64)
	end, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return m, false, false
	}
	perms := f[1]
	// A running executable replaced on disk shows as "PATH (deleted)".
	name := string(bytes.Join(f[min(5, len(f)):], []byte(" ")))
	if name != path && name != path+" (deleted)" ||
		len(perms) != 4 || perms[1] == 'w' || perms[3] != 'p' {
		return m, true, false
	}
	return Mapping{Start: uintptr(start), End: uintptr(end), Executable: perms[2] == 'x'}, true, true
}

// field parses "Name:   123 kB" into bytes.
func field(line []byte, name string) (int64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(name))
	if !ok {
		return 0, false
	}
	f := bytes.Fields(rest)
	if len(f) < 1 {
		return 0, false
	}
	kb, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		return 0, false
	}
	return kb << 10, true
}
