//go:build unix

package users

import (
	"io/fs"
	"os"
	"syscall"
)

// keepOwner gives f the owner of old, when allowed (root editing the service's file), so that
// the server can still read the file it is handed.
func keepOwner(f *os.File, old fs.FileInfo) {
	if st, ok := old.Sys().(*syscall.Stat_t); ok {
		_ = f.Chown(int(st.Uid), int(st.Gid))
	}
}
