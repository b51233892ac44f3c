// Package lambdaenv reads what both Lambda functions take from their environment: the AWS
// configuration (the SDK's standard chain and endpoint variables), an S3 client, the routes
// file (packaged with the function, or s3://bucket/key) and the idempotency ledger.
//
// Variables: ROUTES, LEDGER_BUCKET (required), LEDGER_PREFIX, S3_FORCE_PATH_STYLE=true for
// S3-compatible endpoints; AWS_REGION, AWS_ENDPOINT_URL_S3 and the rest as the SDK reads them.
package lambdaenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/route"
)

// maxRoutesSize bounds a routes file read from S3.
const maxRoutesSize = 4 << 20

// Env is a function's shared environment.
type Env struct {
	AWS    aws.Config
	S3     *s3.Client
	Ledger *ledger.Ledger
}

// Load reads the AWS configuration and LEDGER_BUCKET/LEDGER_PREFIX.
func Load(ctx context.Context) (*Env, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	bucket := os.Getenv("LEDGER_BUCKET")
	if bucket == "" {
		return nil, errors.New("LEDGER_BUCKET is required")
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = os.Getenv("S3_FORCE_PATH_STYLE") == "true" })
	return &Env{AWS: cfg, S3: s3c, Ledger: ledger.New(s3c, bucket, os.Getenv("LEDGER_PREFIX"))}, nil
}

// Routes loads the routes file ROUTES names, or def when it is unset; with neither it returns
// nil (a function that can run without routes).
func (e *Env) Routes(ctx context.Context, def string) (*route.Config, error) {
	where := os.Getenv("ROUTES")
	if where == "" {
		where = def
	}
	if where == "" {
		return nil, nil
	}
	rest, ok := strings.CutPrefix(where, "s3://")
	if !ok {
		return route.Load(where)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if bucket == "" || key == "" {
		return nil, fmt.Errorf("routes %s: want s3://bucket/key", where)
	}
	out, err := e.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("routes %s: %w", where, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxRoutesSize+1))
	if err != nil {
		return nil, fmt.Errorf("routes %s: %w", where, err)
	}
	if len(data) > maxRoutesSize {
		return nil, fmt.Errorf("routes %s: larger than %d bytes", where, maxRoutesSize)
	}
	return route.Parse(where, data)
}
