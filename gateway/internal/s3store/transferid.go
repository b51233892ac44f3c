package s3store

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// withTransferIDUserAgent is an s3.Options function adding the transfer id of the request's
// context (storage.WithTransferID) to its User-Agent.
func withTransferIDUserAgent(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Build.Add(transferIDUA{}, middleware.After)
	})
}

type transferIDUA struct{}

func (transferIDUA) ID() string { return "FerryTransferIDUserAgent" }

func (transferIDUA) HandleBuild(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (
	middleware.BuildOutput, middleware.Metadata, error,
) {
	if id := storage.TransferID(ctx); id != "" && isToken(id) {
		if req, ok := in.Request.(*smithyhttp.Request); ok {
			ua := req.Header.Get("User-Agent")
			req.Header.Set("User-Agent", strings.TrimSpace(ua+" "+storage.UserAgentTransferID+id))
		}
	}
	return next.HandleBuild(ctx, in)
}

// isToken keeps the header well-formed whatever a caller passes as an id.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return len(s) <= 64
}
