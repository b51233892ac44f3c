// Package s3status tells S3 error responses apart by their HTTP status, whichever way the SDK
// or an S3-compatible server reports them (a response error with the status, or an API error
// code only).
package s3status

import (
	"errors"
	"net/http"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Is reports whether err is an S3 response with HTTP status code.
func Is(err error, code int) bool {
	if err == nil {
		return false
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == code {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch code {
		case http.StatusPreconditionFailed:
			return ae.ErrorCode() == "PreconditionFailed"
		case http.StatusNotFound:
			return NoSuchKey(err)
		case http.StatusConflict:
			return ae.ErrorCode() == "ConditionalRequestConflict"
		}
	}
	return false
}

// NoSuchKey reports whether err is S3's answer that the object does not exist (NoSuchKey on a
// GET, NotFound on a HEAD). Unlike Is(err, 404) it does not take other 404s (NoSuchBucket) for
// a missing object.
func NoSuchKey(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound")
}
