package ftpd

import (
	"crypto/md5"  //nolint:gosec // the client asked for it
	"crypto/sha1" //nolint:gosec // the client asked for it
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/spf13/afero"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// clientDriver is one logged-in session's file system for ftpserverlib. Transfers go through
// GetHandle and listings through ReadDir, so afero's File-returning methods are refused.
type clientDriver struct {
	s *session
}

var (
	_ ftpserver.ClientDriver                      = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionFileList     = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtentionFileTransfer = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionRemoveDir    = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionHasher       = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionAllocate     = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionSite         = (*clientDriver)(nil)
)

// abs resolves name against the working directory: ftpserverlib passes absolute paths except
// to Stat from HASH.
func (d *clientDriver) abs(name string) string {
	if !path.IsAbs(name) {
		name = path.Join(d.s.cc.Path(), name)
	}
	return path.Clean(name)
}

func (d *clientDriver) fs() storage.FS {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	return d.s.fsys
}

func (d *clientDriver) Name() string { return "ferry" }

func (d *clientDriver) Stat(name string) (os.FileInfo, error) {
	raw := name
	name = d.abs(name)
	e, err := d.fs().Stat(d.s.ctx, name)
	if err != nil && permanent(err) && path.IsAbs(raw) && d.listing() {
		// LIST/NLST of a missing path: ftpserverlib would answer 450, which lftp retries
		// forever. List it as an empty directory instead, as vsftpd does. (ftpserverlib also
		// Stats the raw "-la ..." argument; that relative name keeps its error.)
		d.s.log.Debug("listing a missing path as empty", "path", name, "err", err)
		return (&storage.Entry{Name: path.Base(name), Dir: true, ModTime: time.Now()}).Info(), nil
	}
	if err != nil {
		return nil, d.s.fail("stat", name, err)
	}
	if e.Name == "" {
		e.Name = path.Base(name)
	}
	return e.Info(), nil
}

func (d *clientDriver) ReadDir(name string) ([]os.FileInfo, error) {
	if err := d.checkDataTLS(); err != nil {
		return nil, d.s.fail("list", name, err)
	}
	name = d.abs(name)
	var out []os.FileInfo
	err := d.fs().List(d.s.ctx, name, func(e *storage.Entry) error {
		out = append(out, e.Info())
		return nil
	})
	if err != nil && permanent(err) && d.listing() {
		// As in Stat: an empty listing rather than a 450 that clients retry forever.
		d.s.log.Info("listing refused; sent as empty", "path", name, "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, d.s.fail("list", name, err)
	}
	return out, nil
}

// listing reports whether the command being served is LIST or NLST, whose failures ftpserverlib
// reports as 450 (temporary). MLSD and MLST failures are 550 and are left alone.
func (d *clientDriver) listing() bool {
	switch d.s.cc.GetLastCommand() {
	case "LIST", "NLST":
		return true
	}
	return false
}

// permanent reports whether err will not go away by retrying.
func permanent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, storage.ErrNotDir) || errors.Is(err, storage.ErrInvalidPath)
}

func (d *clientDriver) Mkdir(name string, _ os.FileMode) error {
	name = d.abs(name)
	return d.s.fail("mkdir", name, d.fs().Mkdir(d.s.ctx, name))
}

// MkdirAll serves SITE MKDIR.
func (d *clientDriver) MkdirAll(name string, _ os.FileMode) error {
	name = d.abs(name)
	fsys := d.fs()
	for i := 1; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			continue
		}
		p := name[:i]
		if p == "/" {
			continue
		}
		if err := fsys.Mkdir(d.s.ctx, p); err != nil && !errors.Is(err, fs.ErrExist) {
			return d.s.fail("mkdir", p, err)
		}
	}
	return nil
}

// Remove serves DELE.
func (d *clientDriver) Remove(name string) error {
	name = d.abs(name)
	return d.s.fail("remove", name, d.fs().Remove(d.s.ctx, name))
}

// RemoveDir serves RMD.
func (d *clientDriver) RemoveDir(name string) error {
	name = d.abs(name)
	return d.s.fail("rmdir", name, d.fs().Rmdir(d.s.ctx, name))
}

// RemoveAll serves SITE RMDIR, which other servers make recursive: on object storage a
// recursive delete is too easy to regret, so only an empty directory is removed.
func (d *clientDriver) RemoveAll(name string) error { return d.RemoveDir(name) }

func (d *clientDriver) Rename(from, to string) error {
	from, to = d.abs(from), d.abs(to)
	return d.s.fail("rename", from+" -> "+to, d.fs().Rename(d.s.ctx, from, to))
}

// setStat records attributes. Clients fail whole jobs on a refused chmod or MFMT, so only a
// missing file and a refusal by the user's permissions (another user's file, for a user without
// overwrite) are errors; anything else (no Setstater, a store error) is logged and reported as
// success.
func (d *clientDriver) setStat(op, name string, attrs storage.Attrs) error {
	name = d.abs(name)
	fsys := d.fs()
	ss, ok := storage.As[storage.Setstater](fsys)
	var err error
	if ok {
		err = ss.SetStat(d.s.ctx, name, attrs)
	}
	if !ok || errors.Is(err, storage.ErrUnsupported) {
		// Still say whether the file exists.
		if _, serr := fsys.Stat(d.s.ctx, name); serr != nil {
			return d.s.fail(op, name, serr)
		}
		return nil
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return d.s.fail(op, name, err)
	}
	if err != nil {
		d.s.log.Info("attributes not recorded; reporting success", "op", op, "path", name, "err", err)
	}
	return nil
}

// Chmod serves SITE CHMOD.
func (d *clientDriver) Chmod(name string, mode os.FileMode) error {
	m := mode.Perm()
	return d.setStat("chmod", name, storage.Attrs{Mode: &m})
}

// Chtimes serves MFMT.
func (d *clientDriver) Chtimes(name string, _, mtime time.Time) error {
	t := mtime.UTC()
	return d.setStat("mfmt", name, storage.Attrs{ModTime: &t})
}

func (d *clientDriver) Chown(name string, _, _ int) error {
	return d.s.fail("chown", d.abs(name), errNotFile)
}

// AllocateSpace serves ALLO: the size tunes the next upload's part size.
func (d *clientDriver) AllocateSpace(size int) error {
	d.s.mu.Lock()
	d.s.sizeHint = int64(size)
	d.s.mu.Unlock()
	return nil
}

func (d *clientDriver) Create(name string) (afero.File, error) { return nil, errNotFile }
func (d *clientDriver) Open(name string) (afero.File, error)   { return nil, errNotFile }
func (d *clientDriver) OpenFile(string, int, os.FileMode) (afero.File, error) {
	return nil, errNotFile
}

// ComputeHash serves HASH and the X* digest commands. A whole-file SHA-256 comes from the store
// (S3 may have it already); anything else is computed over a ranged read.
func (d *clientDriver) ComputeHash(name string, algo ftpserver.HASHAlgo, start, end int64) (string, error) {
	name = d.abs(name)
	fsys := d.fs()
	if algo == ftpserver.HASHAlgoSHA256 && start == 0 {
		if h, ok := storage.As[storage.Hasher](fsys); ok {
			if e, err := fsys.Stat(d.s.ctx, name); err == nil && end >= e.Size {
				sum, err := h.SHA256(d.s.ctx, name)
				if err == nil {
					return sum, nil
				}
				if !errors.Is(err, storage.ErrUnsupported) {
					return "", d.s.fail("hash", name, err)
				}
			}
		}
	}
	var h hash.Hash
	switch algo {
	case ftpserver.HASHAlgoCRC32:
		h = crc32.NewIEEE()
	case ftpserver.HASHAlgoMD5:
		h = md5.New() //nolint:gosec
	case ftpserver.HASHAlgoSHA1:
		h = sha1.New() //nolint:gosec
	case ftpserver.HASHAlgoSHA256:
		h = sha256.New()
	case ftpserver.HASHAlgoSHA512:
		h = sha512.New()
	default:
		return "", d.s.fail("hash", name, errNotFile)
	}
	r, err := fsys.Open(d.s.ctx, name)
	if err != nil {
		return "", d.s.fail("hash", name, err)
	}
	defer r.Close()
	if end < start {
		end = start
	}
	if _, err := io.Copy(h, io.NewSectionReader(r, start, end-start)); err != nil {
		return "", d.s.fail("hash", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkDataTLS refuses clear data connections when TLS is required.
func (d *clientDriver) checkDataTLS() error {
	if d.s.srv.cfg.TLS.Mode == TLSRequired && !d.s.cc.HasTLSForTransfers() {
		return errDataTLS
	}
	return nil
}

// GetHandle starts a download (O_RDONLY) or an upload. Uploads never modify an existing object
// in place: APPE to an existing non-empty file and STOR after REST are refused.
func (d *clientDriver) GetHandle(name string, flags int, offset int64) (ftpserver.FileTransfer, error) {
	name = d.abs(name)
	if err := d.checkDataTLS(); err != nil {
		return nil, d.s.fail("transfer", name, err)
	}
	fsys := d.fs()
	if flags&(os.O_WRONLY|os.O_RDWR) == 0 {
		id := newTransferID()
		r, err := fsys.Open(storage.WithTransferID(d.s.ctx, id), name)
		if err != nil {
			return nil, d.s.fail("download", name, err, "transfer_id", id)
		}
		return d.s.newDownload(name, id, r), nil
	}
	switch {
	case flags&os.O_APPEND != 0:
		e, err := fsys.Stat(d.s.ctx, name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Appending to nothing is an upload.
		case err != nil:
			return nil, d.s.fail("append", name, err)
		case e.Dir:
			return nil, d.s.fail("append", name, storage.ErrIsDir)
		case e.Size > 0:
			return nil, d.s.fail("append", name, errAppend)
		}
	case offset > 0:
		return nil, d.s.fail("upload", name, errResumeUpload)
	}
	id := newTransferID()
	up, err := fsys.Create(d.s.ctx, name, storage.CreateOptions{
		User:       d.s.userName(),
		Protocol:   d.s.protocol(),
		ClientAddr: d.s.cc.RemoteAddr().String(),
		TransferID: id,
		SessionID:  d.s.id,
		SizeHint:   d.s.takeSizeHint(),
	})
	if err != nil {
		return nil, d.s.fail("upload", name, err, "transfer_id", id)
	}
	return d.s.newUpload(name, id, up), nil
}
