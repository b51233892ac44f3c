// Command transform is the transform Lambda: S3 "Object Created" events (via EventBridge) ->
// route -> transform chain -> output objects -> "File Processed"/"File Rejected" on EventBridge.
//
// Environment: ROUTES (routes file, default $LAMBDA_TASK_ROOT/pipeline.yaml, or s3://bucket/key),
// LEDGER_BUCKET (required), LEDGER_PREFIX, EVENT_BUS_NAME (default "default"),
// METRICS_NAMESPACE, S3_FORCE_PATH_STYLE=true for S3-compatible endpoints. Endpoints and
// credentials come from the SDK's usual variables (AWS_ENDPOINT_URL_S3, ..._EVENTBRIDGE).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/handler"
)

func main() {
	log := lambdacontext.NewLogger()
	ctx := context.Background()
	h, err := setup(ctx, log)
	if err != nil {
		log.Error("transform: setup", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

func setup(ctx context.Context, log interface{ Info(string, ...any) }) (*handler.TransformHandler, error) {
	cfg, err := awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = os.Getenv("S3_FORCE_PATH_STYLE") == "true" })
	routes, err := loadRoutes(ctx, s3c, env("ROUTES", os.Getenv("LAMBDA_TASK_ROOT")+"/pipeline.yaml"))
	if err != nil {
		return nil, err
	}
	bucket := os.Getenv("LEDGER_BUCKET")
	if bucket == "" {
		return nil, fmt.Errorf("LEDGER_BUCKET is required")
	}
	log.Info("transform: ready", "routes", len(routes.Routes), "ledger", bucket)
	return handler.NewTransformHandler(handler.TransformConfig{
		S3: s3c, Routes: routes, Ledger: handler.NewLedger(s3c, bucket, os.Getenv("LEDGER_PREFIX")),
		Events:  handler.EventBridgeEmitter{API: awseventbridge.NewFromConfig(cfg), BusName: os.Getenv("EVENT_BUS_NAME")},
		Metrics: handler.NewMetrics(os.Stdout, os.Getenv("METRICS_NAMESPACE"), "transform"),
		Log:     lambdacontext.NewLogger(), Region: cfg.Region,
	})
}
