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
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/ferrygw/ferry/pipeline/handler"
	"github.com/ferrygw/ferry/pipeline/lambdaenv"
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

func setup(ctx context.Context, log interface{ Info(string, ...any) }) (*handler.Transform, error) {
	env, err := lambdaenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	routes, err := env.Routes(ctx, os.Getenv("LAMBDA_TASK_ROOT")+"/pipeline.yaml")
	if err != nil {
		return nil, err
	}
	log.Info("transform: ready", "routes", len(routes.Routes), "ledger", env.Ledger.Bucket())
	return handler.NewTransform(handler.TransformConfig{
		S3: env.S3, Routes: routes, Ledger: env.Ledger,
		Events:  handler.EventBridgeEmitter{API: awseventbridge.NewFromConfig(env.AWS), BusName: os.Getenv("EVENT_BUS_NAME")},
		Metrics: handler.NewMetrics(os.Stdout, os.Getenv("METRICS_NAMESPACE"), "transform"),
		Log:     lambdacontext.NewLogger(), Region: env.AWS.Region,
	})
}
