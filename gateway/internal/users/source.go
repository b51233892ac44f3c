package users

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ErrConflict reports an edit refused because the users file changed between reading it and
// writing it back (another admin's edit): nothing was written, and running the command again
// applies it to the new content.
var ErrConflict = errors.New("the users file was changed by someone else since it was read")

// A Source is where a users file is kept: a local file (LocalFile) or an S3 object (S3Object),
// which every replica of a gateway reads.
type Source interface {
	// String names the file in messages: its path or its s3:// URL.
	String() string
	// read returns the current content; a missing file is an error matching fs.ErrNotExist.
	read(ctx context.Context) (content, error)
	// write replaces the file with data if it still is prev (prev.exists false: if there is
	// still none), and fails with ErrConflict otherwise.
	write(ctx context.Context, data []byte, prev content) error
}

// content is one version of a users file.
type content struct {
	data    []byte
	version string      // changes whenever the content does: the ETag on S3, a SHA-256 locally
	exists  bool        // false: there is no file (yet)
	info    fs.FileInfo // local files: mode and owner to keep when writing
}

// LocalFile is a users file on the local file system.
func LocalFile(path string) Source { return localFile(path) }

type localFile string

func (p localFile) String() string { return string(p) }

func (p localFile) read(context.Context) (content, error) {
	data, err := os.ReadFile(string(p))
	if err != nil {
		return content{}, fmt.Errorf("users: %w", err)
	}
	info, err := os.Stat(string(p))
	if err != nil {
		return content{}, fmt.Errorf("users: %w", err)
	}
	return content{data: data, version: digest(data), exists: true, info: info}, nil
}

// write renames a complete new file over the old one. A local file has no compare-and-swap, so
// the check that it is still prev happens just before the rename: it catches two admins editing
// minutes apart, not two writes within microseconds.
func (p localFile) write(_ context.Context, data []byte, prev content) error {
	perm := fs.FileMode(0o600) // it holds password hashes
	if prev.info != nil {
		perm = prev.info.Mode().Perm()
	}
	return writeAtomic(string(p), data, perm, prev.info, func() error {
		cur, err := os.ReadFile(string(p))
		switch {
		case errors.Is(err, fs.ErrNotExist) && !prev.exists:
			return nil
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("users: %w", err)
		case err != nil || !prev.exists || !bytes.Equal(cur, prev.data):
			return fmt.Errorf("%s: %w", p, ErrConflict)
		}
		return nil
	})
}

func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
