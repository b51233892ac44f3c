package storage

import "context"

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
