//go:build unix

package certs

import (
	"io/fs"
	"syscall"
)

// fileIdentity returns the device and inode of the file described by fi, so
// that a file replaced by rename (or a re-pointed symlink, as used by
// Kubernetes secret volumes) is noticed even if size and mtime match.
func fileIdentity(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino) // field types differ by platform
	}
	return 0, 0
}
