//go:build !unix

package certs

import "io/fs"

// fileIdentity is not available on this platform; modification time and
// size are used alone.
func fileIdentity(fs.FileInfo) (dev, ino uint64) { return 0, 0 }
