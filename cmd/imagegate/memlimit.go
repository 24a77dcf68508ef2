package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// When GOMEMLIMIT is not set, the Go heap is held under the container's
// memory limit less a headroom for what the Go runtime does not count (the
// binary's resident pages, fragmentation): 10 % of the limit, at least
// minMemoryHeadroom, at most half the limit. The resident memory outside
// the Go limit measured 25-30 MiB (BENCHMARKS.md, "Memory"): at 256 MiB a
// 10 % headroom (230 MiB) peaked at 260 MiB under load with 100,000 cached
// digests, 40 MiB (216 MiB) at 245 MiB.
const minMemoryHeadroom = 40 << 20

// softMemoryLimit is the Go memory limit for a container limit.
func softMemoryLimit(limit int64) int64 {
	headroom := max(limit/10, minMemoryHeadroom)
	return max(limit-headroom, limit/2)
}

// unlimited is what cgroup v1 reports for no limit (the largest page-aligned
// int64); anything at or above it means none.
const unlimited = 1 << 62

// containerMemoryLimit returns the memory limit of the cgroup the process
// runs in, the smallest one set on it or any parent (the effective limit),
// and the file it came from. root is the cgroup mount (/sys/fs/cgroup) and
// self the process's cgroup list (/proc/self/cgroup). Both cgroup v2
// (memory.max) and v1 (the memory controller's memory.limit_in_bytes) are
// read; a container whose cgroup namespace hides the host path sees its own
// cgroup at the root of the mount, which is tried too. ok is false when no
// limit is set or none can be read.
func containerMemoryLimit(root string, self []byte) (limit int64, file string, ok bool) {
	var dirs []string
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			dirs = append(dirs, ancestors(root, parts[2])...)
		case hasController(parts[1], "memory"):
			dirs = append(dirs, ancestors(filepath.Join(root, "memory"), parts[2])...)
		}
	}
	for _, d := range dirs {
		for _, name := range []string{"memory.max", "memory.limit_in_bytes"} {
			b, err := os.ReadFile(filepath.Join(d, name))
			if err != nil {
				continue
			}
			s := strings.TrimSpace(string(b))
			if s == "max" {
				continue
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n <= 0 || n >= unlimited {
				continue
			}
			if !ok || n < limit {
				limit, file, ok = n, filepath.Join(d, name), true
			}
		}
	}
	return limit, file, ok
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// ancestors lists mount/p and each of its parents up to mount itself.
func ancestors(mount, p string) []string {
	p = path.Clean("/" + p)
	var out []string
	for {
		out = append(out, filepath.Join(mount, filepath.FromSlash(p)))
		if p == "/" {
			return out
		}
		p = path.Dir(p)
	}
}

// applyMemoryLimit holds the Go heap under softMemoryLimit of the
// container's memory limit when GOMEMLIMIT is not set (an explicit
// GOMEMLIMIT, "off" included, always wins): without it the heap may grow to
// twice the live set (GOGC) and past the container's limit, an OOM kill
// instead of a GC that works harder. It returns what it did, for the log,
// or "" when it did nothing.
func applyMemoryLimit(getenv func(string) string, root string, self []byte) string {
	if getenv("GOMEMLIMIT") != "" {
		return ""
	}
	limit, file, ok := containerMemoryLimit(root, self)
	if !ok {
		return ""
	}
	soft := softMemoryLimit(limit)
	debug.SetMemoryLimit(soft)
	return fmt.Sprintf("Go memory limit set to %d MiB, %d MiB under the container's %d MiB (%s); set GOMEMLIMIT to choose another, or GOMEMLIMIT=off for none",
		soft>>20, (limit-soft)>>20, limit>>20, file)
}
