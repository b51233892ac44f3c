// Command notify is the notify Lambda: "File Processed"/"File Rejected" events -> one SNS
// message each, written by the dataset's templates (per protocol: e-mail text, SMS line, JSON),
// with message attributes dataset, user, status, route and kind.
//
// Environment: SNS_TOPIC_ARN (default topic), ROUTES (optional routes file: its datasets'
// topics, languages, templates and download links; without it every dataset gets the English
// built-ins and the default topic), LEDGER_BUCKET (required: one notification per event even
// when EventBridge or Lambda redeliver), LEDGER_PREFIX, S3_FORCE_PATH_STYLE=true for
// S3-compatible endpoints. Endpoints and credentials come from the SDK's usual variables
// (AWS_ENDPOINT_URL_SNS, AWS_ENDPOINT_URL_S3). A dataset with download_links needs
// s3:GetObject on the outputs in this function's role: the links are signed with it.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/ferrygw/ferry/pipeline/handler"
	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/route"
)

func main() {
	log := lambdacontext.NewLogger()
	h, err := setup(context.Background())
	if err != nil {
		log.Error("notify: setup", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

func setup(ctx context.Context) (*handler.NotifyHandler, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	topics := map[string]string{}
	var datasets map[string]route.Dataset
	if f := os.Getenv("ROUTES"); f != "" {
		routes, err := route.Load(f)
		if err != nil {
			return nil, err
		}
		datasets = routes.Datasets
		for name, d := range routes.Datasets {
			topics[name] = d.Topic
		}
	}
	pub, err := notify.NewSNSPublisher(sns.NewFromConfig(cfg), os.Getenv("SNS_TOPIC_ARN"), topics)
	if err != nil {
		return nil, err
	}
	bucket := os.Getenv("LEDGER_BUCKET")
	if bucket == "" {
		return nil, fmt.Errorf("LEDGER_BUCKET is required")
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = os.Getenv("S3_FORCE_PATH_STYLE") == "true" })
	return handler.NewNotifyHandler(handler.NotifyConfig{
		Publisher: pub, Ledger: handler.NewLedger(s3c, bucket, os.Getenv("LEDGER_PREFIX")), Log: lambdacontext.NewLogger(),
		Datasets: datasets, Presigner: s3.NewPresignClient(s3c), Credentials: cfg.Credentials,
	})
}
