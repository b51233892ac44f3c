package storage

import (
	"context"
	"strings"
)

type transferIDKey struct{}

// WithTransferID returns ctx carrying a transfer's id, so that what a store does for the
// transfer (its S3 requests, its log lines) can name it. Uploads also carry it in
// CreateOptions.TransferID; downloads only this way.
func WithTransferID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, transferIDKey{}, id)
}

// TransferID returns the transfer id ctx carries, or "".
func TransferID(ctx context.Context) string {
	id, _ := ctx.Value(transferIDKey{}).(string)
	return id
}

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
