package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// The cgroup trees here are files in a temporary directory laid out as the
// kernel lays out /sys/fs/cgroup: a real container limit cannot be created
// on this machine (no privileges to make cgroups), and these functions only
// read files.
func TestContainerMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		files map[string]string // path under the mount → content
		self  string            // /proc/self/cgroup
		want  int64
		file  string
	}{
		{desc: "v2 leaf", files: map[string]string{"kubepods/pod1/c1/memory.max": "536870912\n", "kubepods/memory.max": "max\n"},
			self: "0::/kubepods/pod1/c1\n", want: 512 << 20, file: "kubepods/pod1/c1/memory.max"},
		{desc: "v2 smaller parent", files: map[string]string{"kubepods/pod1/c1/memory.max": "max\n", "kubepods/pod1/memory.max": "268435456\n"},
			self: "0::/kubepods/pod1/c1\n", want: 256 << 20, file: "kubepods/pod1/memory.max"},
		{desc: "v2 no limit", files: map[string]string{"kubepods/pod1/memory.max": "max\n"}, self: "0::/kubepods/pod1\n"},
		{desc: "v2 namespaced", files: map[string]string{"memory.max": "1073741824\n"},
			self: "0::/kubepods/pod1/c1\n", want: 1 << 30, file: "memory.max"},
		{desc: "v1", files: map[string]string{"memory/docker/abc/memory.limit_in_bytes": "268435456\n", "memory/memory.limit_in_bytes": "9223372036854771712\n"},
			self: "12:pids:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n", want: 256 << 20, file: "memory/docker/abc/memory.limit_in_bytes"},
		{desc: "v1 unlimited", files: map[string]string{"memory/process_api/x/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.limit_in_bytes": "9223372036854771712\n"},
			self: "4:memory:/process_api/x\n0::/\n"},
		{desc: "garbage", files: map[string]string{"memory.max": "lots\n"}, self: "0::/\n"},
		{desc: "no cgroup file", self: ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root := t.TempDir()
			for p, c := range tc.files {
				full := filepath.Join(root, filepath.FromSlash(p))
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, file, ok := containerMemoryLimit(root, []byte(tc.self))
			if ok != (tc.want != 0) || got != tc.want {
				t.Fatalf("containerMemoryLimit() = %d, %t; want %d", got, ok, tc.want)
			}
			if ok && file != filepath.Join(root, filepath.FromSlash(tc.file)) {
				t.Errorf("file = %s, want %s", file, tc.file)
			}
		})
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "memory.max"), []byte("536870912\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self := []byte("0::/\n")

	if msg := applyMemoryLimit(func(k string) string { return map[string]string{"GOMEMLIMIT": "off"}[k] }, root, self); msg != "" || debug.SetMemoryLimit(-1) != before {
		t.Fatalf("with GOMEMLIMIT set: %q, limit %d; want nothing done (limit %d)", msg, debug.SetMemoryLimit(-1), before)
	}
	msg := applyMemoryLimit(func(string) string { return "" }, root, self)
	if got, want := debug.SetMemoryLimit(-1), int64(536870912-53687091); got != want {
		t.Errorf("limit = %d, want %d (512 MiB less 10 %%)", got, want)
	}
	for _, w := range []string{"460 MiB", "512 MiB", "memory.max", "GOMEMLIMIT"} {
		if !strings.Contains(msg, w) {
			t.Errorf("message %q lacks %q", msg, w)
		}
	}
}

// TestSoftMemoryLimit: 10 % of the limit is left outside the Go heap, at
// least 40 MiB (what the binary keeps resident besides it measured 25-30
// MiB), and never more than half the limit.
func TestSoftMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct{ limit, want int64 }{
		{limit: 1024 * mib, want: 1024*mib - 1024*mib/10},
		{limit: 512 * mib, want: 512*mib - 512*mib/10},
		{limit: 400 * mib, want: 360 * mib},
		{limit: 256 * mib, want: 216 * mib},
		{limit: 128 * mib, want: 88 * mib},
		{limit: 64 * mib, want: 32 * mib},
	} {
		if got := softMemoryLimit(tc.limit); got != tc.want {
			t.Errorf("softMemoryLimit(%d MiB) = %.1f MiB, want %.1f MiB", tc.limit/mib, float64(got)/mib, float64(tc.want)/mib)
		}
	}
}
