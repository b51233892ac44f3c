package sftpd

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"

	"github.com/pkg/sftp"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// statusError is what handlers return to pkg/sftp: the status code it unwraps to and a short
// message for the client. The detail stays in the log.
type statusError struct {
	code error // one of pkg/sftp's ErrSSHFx* values
	msg  string
}

func (e *statusError) Error() string { return e.msg }
func (e *statusError) Unwrap() error { return e.code }

func status(code error, msg string) error { return &statusError{code: code, msg: msg} }

var (
	errNoSuchFile   = status(sftp.ErrSSHFxNoSuchFile, "no such file")
	errPermission   = status(sftp.ErrSSHFxPermissionDenied, "permission denied")
	errUnsupported  = status(sftp.ErrSSHFxOpUnsupported, "operation not supported")
	errResumeRefuse = status(sftp.ErrSSHFxOpUnsupported, "resume and append are not supported: upload the whole file")
	errBusy         = status(sftp.ErrSSHFxFailure, "server busy: try again later")
	errTooManyOpen  = status(sftp.ErrSSHFxFailure, "too many files being uploaded in this session")
)

// clientError maps a storage or reassembly error to the status the client sees, and the level
// it is logged at (routine misses are debug, refusals info, the rest errors).
func clientError(err error) (error, slog.Level) {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return se, slog.LevelInfo
	case errors.Is(err, fs.ErrNotExist):
		return errNoSuchFile, slog.LevelDebug
	case errors.Is(err, fs.ErrPermission):
		return errPermission, slog.LevelInfo
	case errors.Is(err, storage.ErrUnsupported):
		return errUnsupported, slog.LevelInfo
	case errors.Is(err, fs.ErrExist):
		return status(sftp.ErrSSHFxFailure, "file exists"), slog.LevelDebug
	case errors.Is(err, storage.ErrNotEmpty):
		return status(sftp.ErrSSHFxFailure, "directory not empty"), slog.LevelDebug
	case errors.Is(err, storage.ErrIsDir):
		return status(sftp.ErrSSHFxFailure, "is a directory"), slog.LevelDebug
	case errors.Is(err, storage.ErrNotDir):
		return status(sftp.ErrSSHFxFailure, "not a directory"), slog.LevelDebug
	case errors.Is(err, storage.ErrInvalidPath):
		return status(sftp.ErrSSHFxFailure, "invalid path"), slog.LevelInfo
	case errors.Is(err, storage.ErrTooLarge):
		return status(sftp.ErrSSHFxFailure, "operation exceeds a configured limit"), slog.LevelInfo
	case errors.Is(err, storage.ErrBusy):
		return errBusy, slog.LevelWarn
	case errors.Is(err, errRewrite):
		return status(sftp.ErrSSHFxOpUnsupported, "rewriting uploaded data is not supported: upload the whole file"), slog.LevelInfo
	case errors.Is(err, errConflict), errors.Is(err, errGapAtClose), errors.Is(err, errGapTimeout), errors.Is(err, errWriterClose):
		return status(sftp.ErrSSHFxFailure, "upload failed: writes out of sequence"), slog.LevelWarn
	case errors.Is(err, storage.ErrAborted):
		return status(sftp.ErrSSHFxFailure, "upload aborted"), slog.LevelInfo
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status(sftp.ErrSSHFxFailure, "operation cancelled"), slog.LevelInfo
	default:
		// Unclassified: S3 failing even after the SDK's retries, the network, a bug.
		return status(sftp.ErrSSHFxFailure, "storage error: not done, try again later"), slog.LevelError
	}
}
