package sftpd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// Fileread implements sftp.FileReader: reads go to the storage Reader's ReadAt (clients read
// in parallel at increasing offsets).
func (s *session) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	defer s.busy()()
	ctx, cancel := s.opCtx(r)
	tid := newTransferID()
	rd, err := s.fs.Open(storage.WithTransferID(ctx, tid), r.Filepath)
	if err != nil {
		cancel()
		return nil, s.fail("open", r.Filepath, err, "transfer_id", tid)
	}
	s.conn.active.Add(1)
	return &download{s: s, name: r.Filepath, tid: tid, rd: rd, cancel: cancel, start: time.Now()}, nil
}

type download struct {
	s      *session
	name   string
	tid    string
	rd     storage.Reader
	cancel context.CancelFunc
	start  time.Time
	bytes  atomic.Int64
	once   sync.Once
	failed atomic.Pointer[error]
}

var (
	_ io.ReaderAt        = (*download)(nil)
	_ sftp.TransferError = (*download)(nil)
)

func (d *download) ReadAt(p []byte, off int64) (int, error) {
	defer d.s.busy()()
	n, err := d.rd.ReadAt(p, off)
	d.bytes.Add(int64(n))
	if err != nil && !errors.Is(err, io.EOF) {
		return n, d.s.fail("read", d.name, err, "offset", off, "transfer_id", d.tid)
	}
	return n, err
}

func (d *download) TransferError(err error) { d.failed.Store(&err) }

func (d *download) Close() error {
	d.once.Do(func() {
		err := d.rd.Close()
		d.cancel()
		d.s.conn.active.Add(-1)
		attrs := []any{"path", d.name, "transfer_id", d.tid, "bytes", d.bytes.Load(), "duration", time.Since(d.start)}
		if p := d.failed.Load(); p != nil {
			d.s.log.Info("download interrupted", append(attrs, "error", (*p).Error())...)
		} else {
			d.s.log.Info("download", attrs...)
		}
		if err != nil {
			d.s.log.Debug("close reader", "path", d.name, "transfer_id", d.tid, "error", err.Error())
		}
	})
	return nil
}

// Filewrite implements sftp.FileWriter.
func (s *session) Filewrite(r *sftp.Request) (io.WriterAt, error) { return s.startUpload(r) }

// OpenFile implements sftp.OpenFileWriter (read+write opens, as pkg/sftp's client Create sends):
// writing works as in Filewrite; reading back an unfinished upload is not supported.
func (s *session) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) { return s.startUpload(r) }

func (s *session) startUpload(r *sftp.Request) (*upload, error) {
	defer s.busy()()
	name := r.Filepath
	flags := r.Pflags()
	// The upload's storage context is the open request's: pkg/sftp cancels it only after the
	// handle is closed (committed) or aborted, and not merely because the session is ending,
	// so an abort can still clean up. Waiting writes end with the session (see reorderWriter).
	ctx := r.Context()
	if flags.Append || !flags.Trunc || flags.Excl {
		// Only these opens care about an existing file; a plain put (CREAT|TRUNC) costs no stat.
		e, err := s.fs.Stat(ctx, name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, s.fail("open", name, err)
		case e.Dir:
			return nil, s.fail("open", name, &fs.PathError{Op: "open", Path: name, Err: storage.ErrIsDir})
		case flags.Excl:
			return nil, s.fail("open", name, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist})
		case e.Size > 0:
			// reput/append on an object: the result would have to be old bytes + new ones,
			// which a streaming upload cannot produce. Refuse rather than corrupt.
			return nil, s.fail("open", name, errResumeRefuse, "size", e.Size, "append", flags.Append)
		}
	}
	// Counted from here to finish (or a failed Create): opens beyond the limit are refused
	// before they cost a storage upload.
	if n := s.conn.uploads.Add(1); n > int64(s.srv.cfg.MaxUploads) {
		s.conn.uploads.Add(-1)
		s.srv.deps.Refused("uploads_per_session")
		return nil, s.fail("open", name, errTooManyOpen, "max_uploads", s.srv.cfg.MaxUploads)
	}
	tid := newTransferID()
	up, err := s.fs.Create(ctx, name, storage.CreateOptions{
		User: s.user.Name, Protocol: "sftp", ClientAddr: s.remote, TransferID: tid, SessionID: s.conn.id,
	})
	if err != nil {
		s.conn.uploads.Add(-1)
		return nil, s.fail("create", name, err, "transfer_id", tid)
	}
	wctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancel(fmt.Errorf("session ended: %w", context.Cause(s.ctx))) })
	u := &upload{
		s: s, name: name, tid: tid, up: up, start: time.Now(),
		rw:     newReorderWriter(wctx, up, s.srv.cfg.WriteWindow, s.srv.cfg.WriteWaitTimeout, s.mem),
		cancel: func() { stop(); cancel(nil) },
	}
	s.conn.active.Add(1)
	s.trackUpload(name, u)
	s.log.Debug("upload started", "path", name, "transfer_id", tid)
	return u, nil
}

func newTransferID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// upload is an open SFTP write handle: WriteAt goes through the reorder window into the
// storage upload; Close commits, TransferError (and a disconnect) aborts.
type upload struct {
	s      *session
	name   string
	tid    string
	up     storage.Upload
	rw     *reorderWriter
	cancel func()
	start  time.Time

	mu       sync.Mutex
	attrs    storage.Attrs // set before commit on a store whose uploads cannot record them
	hasAttrs bool
	done     bool
	result   error
}

var (
	_ sftp.WriterAtReaderAt = (*upload)(nil)
	_ sftp.TransferError    = (*upload)(nil)
)

func (u *upload) WriteAt(p []byte, off int64) (int, error) {
	n, err := u.rw.WriteAt(p, off)
	if err != nil {
		// The reorder writer's error is sticky: the upload will be aborted at Close. Log the
		// first one only there, to keep one line per failed transfer.
		out, _ := clientError(err)
		return n, out
	}
	return n, nil
}

func (u *upload) ReadAt([]byte, int64) (int, error) {
	return 0, status(sftp.ErrSSHFxOpUnsupported, "reading a file while uploading it is not supported")
}

func (u *upload) setAttrs(a storage.Attrs) {
	if rec, ok := storage.UploadAs[storage.AttrRecorder](u.up); ok {
		rec.SetAttrs(a)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if a.Mode != nil {
		u.attrs.Mode = a.Mode
	}
	if a.ModTime != nil {
		u.attrs.ModTime = a.ModTime
	}
	u.hasAttrs = true
}

func (u *upload) logAttrs(bytes int64) []any {
	return []any{"path", u.name, "transfer_id", u.tid, "bytes", bytes, "duration", time.Since(u.start)}
}

// Close commits the upload, or aborts it if any write failed or data is missing. A failed
// commit is returned to the client: the transfer failed.
func (u *upload) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return u.result
	}
	u.done = true
	defer u.finish()
	if err := u.rw.Close(); err != nil {
		u.abortLocked(err)
		u.result = u.s.fail("upload", u.name, err, u.logAttrs(u.rw.Size())[2:]...)
		return u.result
	}
	defer u.s.busy()()
	size := u.rw.Size()
	if err := u.up.Close(); err != nil {
		u.result = u.s.fail("commit", u.name, err, u.logAttrs(size)[2:]...)
		return u.result
	}
	u.s.log.Info("upload", u.logAttrs(size)...)
	if u.hasAttrs {
		if st, ok := storage.As[storage.Setstater](u.s.fs); ok {
			if err := st.SetStat(u.s.ctx, u.name, u.attrs); err != nil {
				u.s.log.Info("setstat after upload failed, reported as success", "path", u.name, "transfer_id", u.tid, "error", err.Error())
			}
		}
	}
	return nil
}

// TransferError implements sftp.TransferError: the session died with the handle open.
func (u *upload) TransferError(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return
	}
	u.done = true
	defer u.finish()
	u.abortLocked(err)
	u.result = status(sftp.ErrSSHFxFailure, "upload aborted")
	u.s.log.Warn("upload aborted", append(u.logAttrs(u.rw.Size()), "error", err.Error())...)
}

// abortLocked stops the reorder writer (waking waiting writes), aborts the storage upload so
// no object or multipart upload remains, and waits for a running storage write to return. The
// storage upload is aborted first because a running write may be waiting for transfer memory,
// which only the abort (cancelling it) ends at once; every store allows Abort during a Write.
func (u *upload) abortLocked(cause error) {
	u.rw.Abort(cause)
	if err := u.up.Abort(cause); err != nil {
		u.s.log.Error("abort upload", "path", u.name, "transfer_id", u.tid, "error", err.Error())
	}
	u.rw.waitIdle()
}

func (u *upload) finish() {
	u.s.untrackUpload(u.name, u)
	u.cancel()
	u.s.conn.active.Add(-1)
	u.s.conn.uploads.Add(-1)
}
