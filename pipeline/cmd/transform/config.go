package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/route"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func awsConfig(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config: %w", err)
	}
	return cfg, nil
}

// loadRoutes reads the routes file from the package or, for "s3://bucket/key", from S3.
func loadRoutes(ctx context.Context, api *s3.Client, where string) (*route.Config, error) {
	rest, ok := strings.CutPrefix(where, "s3://")
	if !ok {
		return route.Load(where)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	out, err := api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("routes %s: %w", where, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("routes %s: %w", where, err)
	}
	return route.Parse(where, data)
}
