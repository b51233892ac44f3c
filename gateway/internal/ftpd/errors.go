package ftpd

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// replyError is what the client sees: a short message (ftpserverlib puts Error() in the reply)
// and a kind that ftpserverlib or errors.Is can match. The storage error's detail is logged.
type replyError struct {
	msg  string
	kind error
}

func (e *replyError) Error() string { return e.msg }
func (e *replyError) Unwrap() error { return e.kind }

// Refusals of this package.
var (
	errAppend       = &replyError{msg: "append is not supported: objects cannot be extended in place; upload the whole file", kind: storage.ErrUnsupported}
	errResumeUpload = &replyError{msg: "resuming an upload (REST before STOR) is not supported; upload the whole file", kind: storage.ErrUnsupported}
	errDataTLS      = &replyError{msg: "the data connection must be protected: send PROT P", kind: fs.ErrPermission}
	errNotFile      = &replyError{msg: "not supported on this server", kind: storage.ErrUnsupported}
)

// kinds maps the storage vocabulary to reply messages. "No such file or directory" is the text
// lftp and other clients recognise as a permanent failure.
var kinds = []struct {
	err  error
	msg  string
	kind error
}{
	{fs.ErrNotExist, "No such file or directory", fs.ErrNotExist},
	{fs.ErrPermission, "Permission denied", fs.ErrPermission},
	{fs.ErrExist, "File exists", fs.ErrExist},
	{storage.ErrNotEmpty, "Directory not empty", storage.ErrNotEmpty},
	{storage.ErrIsDir, "Is a directory", storage.ErrIsDir},
	{storage.ErrNotDir, "Not a directory", storage.ErrNotDir},
	{storage.ErrInvalidPath, "Invalid path", storage.ErrInvalidPath},
	// 552 for STOR/APPE/RNTO through ftpserverlib's ErrStorageExceeded.
	{storage.ErrTooLarge, "Operation exceeds a configured limit", errors.Join(storage.ErrTooLarge, ftpserver.ErrStorageExceeded)},
	{storage.ErrUnsupported, "Operation not supported", storage.ErrUnsupported},
	// Busy is transient, but ftpserverlib v0.30.0 answers a failed transfer only with 550, 552
	// or 553: 552 ("exceeded storage allocation") is the one that names a resource limit.
	{storage.ErrBusy, "Server busy: try again later", errors.Join(storage.ErrBusy, ftpserver.ErrStorageExceeded)},
	{storage.ErrAborted, "Transfer aborted", storage.ErrAborted},
	{context.Canceled, "Connection closed", context.Canceled},
}

// fail logs err once, with attrs (a transfer's id), and returns the reply-safe error for the
// client.
func (s *session) fail(op, name string, err error, attrs ...any) error {
	if err == nil {
		return nil
	}
	re, level := toReply(err)
	s.log.Log(s.ctx, level, "ftp request failed", append([]any{"op", op, "path", name, "err", err}, attrs...)...)
	return re
}

// toReply maps err to the client's reply and the level it deserves in the log.
func toReply(err error) (*replyError, slog.Level) {
	var re *replyError
	if errors.As(err, &re) {
		return re, slog.LevelInfo
	}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			level := slog.LevelInfo
			switch k.err {
			case fs.ErrNotExist:
				level = slog.LevelDebug // clients probe for files all the time
			case storage.ErrAborted, storage.ErrBusy, context.Canceled:
				level = slog.LevelWarn
			}
			return &replyError{msg: k.msg, kind: k.kind}, level
		}
	}
	// Unclassified: S3 failing even after the SDK's retries, the network, a bug. Clients
	// should try again later; ftpserverlib sends it as 550 (it has no hook for 451).
	return &replyError{msg: "Storage error: not done, try again later", kind: err}, slog.LevelError
}
