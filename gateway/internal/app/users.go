package app

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// s3ClientConfig is how the gateway reaches S3: the embedded endpoint with its static
// credentials when it runs, else storage.s3 with the SDK's standard credential chain.
func s3ClientConfig(cfg *config.Config) s3store.ClientConfig {
	s := cfg.Storage.S3
	if e := cfg.Embedded.S3; e.Enabled() {
		return s3store.ClientConfig{Endpoint: "http://" + e.Listen, Region: s.Region, PathStyle: true,
			AccessKey: e.AccessKey, Secret: e.Secret, StallTimeout: stallTimeout(s.StallTimeout)}
	}
	return s3store.ClientConfig{Endpoint: s.Endpoint, Region: s.Region, PathStyle: s.PathStyle,
		StallTimeout: stallTimeout(s.StallTimeout)}
}

// stallTimeout maps the config's storage.s3.stall_timeout (0 = off) to the client's (0 =
// default, negative = off).
func stallTimeout(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// UsersSource returns where the users file at location (a path or s3://bucket/key) is kept. An
// S3 object is reached with the same client settings as the storage (s3ClientConfig), so
// `ferry user` edits the file the gateway reads.
func UsersSource(ctx context.Context, cfg *config.Config, location string) (users.Source, error) {
	bucket, key, isS3 := config.ParseS3URL(location)
	if !isS3 {
		return users.LocalFile(location), nil
	}
	if err := config.CheckBucketName(bucket); err != nil || key == "" {
		return nil, fmt.Errorf("users file %q: want s3://BUCKET/KEY", location)
	}
	client, err := s3store.NewClient(ctx, s3ClientConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", location, err)
	}
	return users.S3Object(client, bucket, key), nil
}

// S3Client is the client the gateway would store with (s3ClientConfig): the embedded
// endpoint with its static credentials, else storage.s3 with the SDK's standard chain. The
// operator commands that read the bucket (`ferry trace`, `ferry status`) use it.
func S3Client(ctx context.Context, cfg *config.Config) (*s3.Client, error) {
	return s3store.NewClient(ctx, s3ClientConfig(cfg))
}
