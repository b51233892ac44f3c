package s3store

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// UserAgentTransferID prefixes the transfer id in the User-Agent of the S3 requests made for a
// transfer ("… ferry-transfer/3f2a…"): S3 logs the User-Agent (CloudTrail data events, server
// access logs, the embedded endpoint's log), so a search for a transfer id finds its S3 requests
// next to the gateway's and the pipeline's lines. SigV4 does not sign the User-Agent.
const UserAgentTransferID = "ferry-transfer/"

// TransferIDFromUserAgent returns the transfer id a User-Agent carries, or "".
func TransferIDFromUserAgent(ua string) string {
	for _, f := range strings.Fields(ua) {
		if id, ok := strings.CutPrefix(f, UserAgentTransferID); ok {
			return id
		}
	}
	return ""
}

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
			req.Header.Set("User-Agent", strings.TrimSpace(ua+" "+UserAgentTransferID+id))
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
