package ftpd

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

func newTransferID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Why an upload was not committed (logged, and wrapped into the abort cause).
var (
	errNoCloseNotify = errors.New("TLS data connection closed without close_notify: client gone or transfer cut")
	errClientGone    = errors.New("control connection closed: client gone before the transfer ended")
	errIncomplete    = errors.New("transfer did not reach the end of the data stream")
)

// upload is the FileTransfer for STOR/APPE. ftpserverlib copies the data connection into it with
// io.Copy, which calls ReadFrom with the data connection itself (binary mode) or a converter
// over it (ASCII). Close commits only after a clean end of stream (see the package comment);
// TransferError (ABOR, a dropped connection, a storage error) aborts.
type upload struct {
	s     *session
	name  string
	id    string
	up    storage.Upload
	start time.Time

	mu       sync.Mutex
	n        int64
	eof      bool      // the data stream ended with EOF
	data     *dataConn // the passive data connection, when ReadFrom could see it
	tlsData  bool      // the data stream was TLS
	failure  error     // first failure: the upload is aborted
	closed   bool
	closeErr error
}

var (
	_ ftpserver.FileTransfer      = (*upload)(nil)
	_ ftpserver.FileTransferError = (*upload)(nil)
	_ io.ReaderFrom               = (*upload)(nil)
)

func (s *session) newUpload(name, id string, up storage.Upload) *upload {
	s.transferStarted()
	return &upload{s: s, name: name, id: id, up: up, start: time.Now()}
}

// ReadFrom copies the data stream into the upload and notes how the stream ended.
func (u *upload) ReadFrom(r io.Reader) (int64, error) {
	u.mu.Lock()
	switch c := r.(type) {
	case *tls.Conn:
		u.tlsData = true
		u.data, _ = c.NetConn().(*dataConn)
	case *dataConn:
		u.data = c
	}
	u.mu.Unlock()

	buf := make([]byte, 128<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := u.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if errors.Is(err, io.EOF) {
			u.mu.Lock()
			u.eof = true
			u.mu.Unlock()
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (u *upload) Write(p []byte) (int, error) {
	u.mu.Lock()
	failed := u.failure
	u.mu.Unlock()
	if failed != nil {
		return 0, u.s.fail("upload", u.name, failed, "transfer_id", u.id)
	}
	n, err := u.up.Write(p)
	u.mu.Lock()
	u.n += int64(n)
	u.mu.Unlock()
	if err != nil {
		u.abort(err)
		return n, u.s.fail("upload", u.name, err, "transfer_id", u.id)
	}
	return n, nil
}

func (u *upload) Read([]byte) (int, error) { return 0, errNotFile }

// Seek allows only the no-op seek: resumed uploads are refused in GetHandle.
func (u *upload) Seek(offset int64, whence int) (int64, error) {
	if offset == 0 && whence != io.SeekEnd {
		return 0, nil
	}
	return 0, errResumeUpload
}

// TransferError is ftpserverlib's report that the transfer failed: abort, nothing is visible.
func (u *upload) TransferError(err error) { u.abort(err) }

func (u *upload) abort(cause error) {
	u.mu.Lock()
	if u.failure != nil || u.closed {
		u.mu.Unlock()
		return
	}
	u.failure = cause
	u.mu.Unlock()
	if err := u.up.Abort(cause); err != nil {
		u.s.log.Error("abort upload", "path", u.name, "transfer_id", u.id, "err", err)
	}
}

// verdict decides whether the upload may be committed; nil means yes.
func (u *upload) verdict() error {
	u.mu.Lock()
	failure, eof, data, tlsData := u.failure, u.eof, u.data, u.tlsData
	u.mu.Unlock()
	if failure != nil {
		return failure
	}
	if !eof {
		return errIncomplete
	}
	closeNotify := false
	if tlsData && data != nil {
		if data.rawEOF.Load() {
			return errNoCloseNotify
		}
		closeNotify = true
	}
	if err := u.s.ctx.Err(); err != nil {
		return errClientGone
	}
	// A close_notify is the client's own statement that the stream is complete; without one the
	// end of the stream may be the client dying, which its control connection shows at once.
	grace := u.s.srv.cfg.CommitGrace
	if closeNotify {
		grace = 0
	}
	if !u.s.ctl.alive(grace) {
		return errClientGone
	}
	return nil
}

// Close commits the upload when the transfer ended cleanly and the client is still there, and
// aborts it otherwise. A failed commit is a failed transfer.
func (u *upload) Close() error {
	u.mu.Lock()
	if u.closed {
		err := u.closeErr
		u.mu.Unlock()
		return err
	}
	u.mu.Unlock()

	verr := u.verdict()
	var err error
	if verr != nil {
		u.abort(verr)
		err = fmt.Errorf("%w: %w", storage.ErrAborted, verr)
	} else {
		err = u.up.Close()
	}

	u.mu.Lock()
	u.closed = true
	n := u.n
	switch {
	case errors.Is(verr, errNoCloseNotify), errors.Is(verr, errIncomplete):
		u.closeErr = &replyError{msg: "Upload not stored: " + verr.Error(), kind: storage.ErrAborted}
	case err != nil:
		u.closeErr, _ = toReply(err)
	}
	result := u.closeErr
	u.mu.Unlock()
	u.s.transferEnded()

	if result == nil {
		u.s.log.Info("upload committed", "path", u.name, "transfer_id", u.id, "protocol", u.s.protocol(),
			"bytes", n, "duration", time.Since(u.start))
	} else {
		u.s.log.Warn("upload not committed", "path", u.name, "transfer_id", u.id, "protocol", u.s.protocol(),
			"bytes", n, "duration", time.Since(u.start), "err", err)
	}
	return result
}

// download is the FileTransfer for RETR: a storage Reader, seekable for REST.
type download struct {
	s     *session
	name  string
	id    string // transfer id
	r     storage.Reader
	start time.Time

	mu     sync.Mutex
	n      int64
	err    error
	closed bool
}

var (
	_ ftpserver.FileTransfer      = (*download)(nil)
	_ ftpserver.FileTransferError = (*download)(nil)
)

func (s *session) newDownload(name, id string, r storage.Reader) *download {
	s.transferStarted()
	return &download{s: s, name: name, id: id, r: r, start: time.Now()}
}

func (d *download) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.mu.Lock()
	d.n += int64(n)
	d.mu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) {
		return n, d.s.fail("download", d.name, err, "transfer_id", d.id)
	}
	return n, err
}

func (d *download) Seek(offset int64, whence int) (int64, error) {
	pos, err := d.r.Seek(offset, whence)
	if err != nil {
		return pos, d.s.fail("seek", d.name, err, "transfer_id", d.id)
	}
	return pos, nil
}

func (d *download) Write([]byte) (int, error) { return 0, errNotFile }

func (d *download) TransferError(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
}

func (d *download) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	n, terr := d.n, d.err
	d.mu.Unlock()
	err := d.r.Close()
	d.s.transferEnded()
	if terr != nil {
		d.s.log.Info("download interrupted", "path", d.name, "transfer_id", d.id, "bytes", n, "duration", time.Since(d.start), "err", terr)
	} else {
		d.s.log.Info("download", "path", d.name, "transfer_id", d.id, "bytes", n, "duration", time.Since(d.start))
	}
	return err
}
