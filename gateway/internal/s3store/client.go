package s3store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// API is the part of the S3 API the store calls; *s3.Client satisfies it.
type API interface {
	HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	CopyObject(context.Context, *s3.CopyObjectInput, ...func(*s3.Options)) (*s3.CopyObjectOutput, error)
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObjectTagging(context.Context, *s3.GetObjectTaggingInput, ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error)
	PutObjectTagging(context.Context, *s3.PutObjectTaggingInput, ...func(*s3.Options)) (*s3.PutObjectTaggingOutput, error)
	CreateMultipartUpload(context.Context, *s3.CreateMultipartUploadInput, ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(context.Context, *s3.UploadPartInput, ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	UploadPartCopy(context.Context, *s3.UploadPartCopyInput, ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error)
	CompleteMultipartUpload(context.Context, *s3.CompleteMultipartUploadInput, ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(context.Context, *s3.AbortMultipartUploadInput, ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListParts(context.Context, *s3.ListPartsInput, ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	ListMultipartUploads(context.Context, *s3.ListMultipartUploadsInput, ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
}

var _ API = (*s3.Client)(nil)

// ClientConfig says where S3 is. Credentials come from the SDK's standard chain (environment,
// shared files, web identity, ECS/EC2 roles).
type ClientConfig struct {
	Endpoint  string // e.g. "http://127.0.0.1:7070"; empty = AWS
	Region    string // empty = from the environment / shared config
	PathStyle bool   // bucket in the path, as most S3-compatible servers want
	// AccessKey and Secret, when set, replace the standard chain: for the embedded endpoint's
	// static dev credentials only.
	AccessKey, Secret string
	// StallTimeout fails a request whose connection moved no byte for this long (the SDK then
	// retries it); 0 = DefaultStallTimeout, negative = never.
	StallTimeout time.Duration
	// Options are applied to the client after Ferry's own (metrics middleware, for instance).
	Options []func(*s3.Options)
}

// NewClient builds an S3 client with the SDK's default retries.
func NewClient(ctx context.Context, cc ClientConfig) (*s3.Client, error) {
	var opts []func(*config.LoadOptions) error
	if cc.Region != "" {
		opts = append(opts, config.WithRegion(cc.Region))
	}
	if cc.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cc.AccessKey, cc.Secret, "")))
	}
	// Up to idleConnsPerHost connections kept open for reuse (the SDK keeps 10): with more
	// concurrent requests than that — sessions times part uploads in the gateway, the bus's
	// deliveries in the embedded pipeline — every request beyond them opened a connection and
	// closed it after one use (on AWS, a TLS handshake each).
	opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConnsPerHost = idleConnsPerHost
		t.MaxIdleConns = max(t.MaxIdleConns, idleConnsPerHost)
	})))
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 client: load aws config: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("s3 client: no region configured (set region or AWS_REGION)")
	}
	stall := cc.StallTimeout
	if stall == 0 {
		stall = DefaultStallTimeout
	}
	withStallTimeout(&cfg, stall)
	optFns := []func(*s3.Options){func(o *s3.Options) {
		if cc.Endpoint != "" {
			o.BaseEndpoint = aws.String(cc.Endpoint)
		}
		o.UsePathStyle = cc.PathStyle
		// Servers that send no response checksum (most S3-compatible ones) would log a warning
		// on every ranged read otherwise.
		o.DisableLogOutputChecksumValidationSkipped = true
	}, UnsignedPayloadOnLoopback, withTransferIDUserAgent}
	return s3.NewFromConfig(cfg, append(optFns, cc.Options...)...), nil
}

// idleConnsPerHost is how many idle connections to the S3 endpoint a client keeps for reuse.
const idleConnsPerHost = 128

// checksumMiddlewareID is the SDK's request checksum middleware (x-amz-checksum-*).
const checksumMiddlewareID = "AWSChecksum:ComputeInputPayloadChecksum"

// UnsignedPayloadOnLoopback is an s3.Options function: requests with a body sent over plain
// HTTP to a loopback address are signed with UNSIGNED-PAYLOAD instead of the body's SHA-256.
//
// Over plain HTTP the SDK otherwise hashes every part body with SHA-256 for the SigV4
// signature (and the server hashes it again to check), on top of the request checksum. On
// loopback no one can alter the body in transit, so that hash protects nothing the request
// checksum (CRC32, still sent and checked by the server) does not, while costing a full pass
// over every byte on both sides. Over HTTPS (AWS) the SDK already sends UNSIGNED-PAYLOAD with
// a trailing checksum, and a plain-HTTP endpoint on another host keeps the signed payload:
// neither changes.
func UnsignedPayloadOnLoopback(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		if _, ok := stack.Finalize.Get(checksumMiddlewareID); !ok {
			return nil // no body worth hashing (GET, HEAD, LIST …)
		}
		return stack.Finalize.Insert(loopbackUnsigned{}, checksumMiddlewareID, middleware.Before)
	})
}

type loopbackUnsigned struct{}

func (loopbackUnsigned) ID() string { return "FerryLoopbackUnsignedPayload" }

func (loopbackUnsigned) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	if req, ok := in.Request.(*smithyhttp.Request); ok && !req.IsHTTPS() && isLoopbackHost(req.URL.Hostname()) &&
		v4.GetPayloadHash(ctx) == "" {
		// The checksum middleware then computes only the checksum, and the signer signs this.
		ctx = v4.SetPayloadHash(ctx, "UNSIGNED-PAYLOAD")
	}
	return next.HandleFinalize(ctx, in)
}

// isLoopbackHost reports whether host (no port) is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}
