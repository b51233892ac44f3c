package s3store

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// DefaultStallTimeout is how long an S3 connection may move no byte in either direction before
// it is given up on.
const DefaultStallTimeout = 30 * time.Second

// withStallTimeout makes every connection of cfg's HTTP client fail once no byte has moved in
// either direction for d, keeping whatever else the client was built with.
//
// The SDK's HTTP client has no such bound (its timeouts cover dialing and TLS only), so an S3
// endpoint that accepts a request and never answers, or stops halfway through a body, would
// hold an upload, a download or a listing for as long as the client waits, which for a partner
// script is forever. A stalled request fails with a timeout, which the SDK retries like any
// network error; a GET body that stalls fails the read, which the reader resumes with a new
// ranged GET. Progress in either direction counts: a large part being sent, or AWS's whitespace
// keep-alive while CompleteMultipartUpload works, never trips it. An idle pooled connection is
// closed after d as well, which the transport handles like any connection the server closed.
func withStallTimeout(cfg *aws.Config, d time.Duration) {
	if d <= 0 {
		return
	}
	hc, _ := cfg.HTTPClient.(*awshttp.BuildableClient)
	if hc == nil {
		if cfg.HTTPClient != nil {
			return // a client of the caller's own: leave it as it is
		}
		hc = awshttp.NewBuildableClient()
	}
	cfg.HTTPClient = hc.WithTransportOptions(func(t *http.Transport) {
		dial := t.DialContext
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &stallConn{Conn: c, d: d}, nil
		}
	})
}

// stallConn pushes both deadlines forward whenever a read or write starts or moves bytes, so
// an operation fails only after d without progress in either direction.
type stallConn struct {
	net.Conn
	d time.Duration
}

func (c *stallConn) extend() { _ = c.Conn.SetDeadline(time.Now().Add(c.d)) }

func (c *stallConn) Read(p []byte) (int, error) {
	c.extend()
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.extend()
	}
	return n, err
}

// Write sends p in pieces of at most stallChunk bytes, so a large body on a slow link keeps
// extending the deadline instead of having to go out whole within d.
func (c *stallConn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		c.extend()
		n, err := c.Conn.Write(p[written:min(len(p), written+stallChunk)])
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

const stallChunk = 64 << 10
