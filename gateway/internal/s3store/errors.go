package s3store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// sdkError carries the storage vocabulary's kind next to the SDK's error, so errors.Is finds
// the kind and logs show the SDK's detail.
type sdkError struct {
	kind  error
	cause error
}

func (e *sdkError) Error() string   { return e.kind.Error() + ": " + e.cause.Error() }
func (e *sdkError) Unwrap() []error { return []error{e.kind, e.cause} }

// pathErr wraps err for op on the virtual path name, translating S3 errors to the storage
// vocabulary. Errors already translated (or of our own making) are wrapped as they are.
func pathErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	if kind := classify(err); kind != nil {
		err = &sdkError{kind: kind, cause: err}
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// classify maps an S3 error to a storage sentinel, or nil when none fits (context errors and
// unknown failures stay as they are).
func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchUpload", "NoSuchBucket":
			return fs.ErrNotExist
		case "AccessDenied", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId",
			"SignatureDoesNotMatch":
			return fs.ErrPermission
		// ConditionalRequestConflict (409): a conditional write raced another write of the key.
		case "PreconditionFailed", "BucketAlreadyExists", "ConditionalRequestConflict":
			return fs.ErrExist
		case "ExistingObjectIsDirectory":
			return storage.ErrIsDir
		case "ObjectParentIsFile":
			return storage.ErrNotDir
		case "DirectoryNotEmpty":
			return storage.ErrNotEmpty
		case "KeyTooLongError", "InvalidObjectName":
			return storage.ErrInvalidPath
		case "EntityTooLarge", "MaxMessageLengthExceeded":
			return storage.ErrTooLarge
		case "NotImplemented":
			return storage.ErrUnsupported
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return fs.ErrNotExist
		case http.StatusForbidden, http.StatusUnauthorized:
			return fs.ErrPermission
		case http.StatusPreconditionFailed:
			return fs.ErrExist
		case http.StatusNotImplemented:
			return storage.ErrUnsupported
		}
	}
	return nil
}

// isNotFound reports whether err says the object (or upload) does not exist.
func isNotFound(err error) bool { return errors.Is(classify(err), fs.ErrNotExist) }

// errReserved refuses client paths through the attribute markers' directory.
var errReserved = fmt.Errorf("%w: %q is reserved for the gateway's attribute markers", fs.ErrPermission, attrDirName)
