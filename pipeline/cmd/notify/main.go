// Command notify is the notify Lambda: "File Processed"/"File Rejected" events -> one SNS
// message each, written by the dataset's templates (per protocol: e-mail text, SMS line, JSON),
// with message attributes dataset, user, status, route and kind.
//
// Environment: SNS_TOPIC_ARN (default topic), ROUTES (optional routes file, packaged or
// s3://bucket/key as for transform: its datasets' topics, languages, templates and download
// links; without it every dataset gets the English built-ins and the default topic), LEDGER_BUCKET (required: one notification per event even
// when EventBridge or Lambda redeliver), LEDGER_PREFIX, S3_FORCE_PATH_STYLE=true for
// S3-compatible endpoints. Endpoints and credentials come from the SDK's usual variables
// (AWS_ENDPOINT_URL_SNS, AWS_ENDPOINT_URL_S3). A dataset with download_links needs
// s3:GetObject on the outputs in this function's role: the links are signed with it.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/ferrygw/ferry/pipeline/handler"
	"github.com/ferrygw/ferry/pipeline/lambdaenv"
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

func setup(ctx context.Context) (*handler.Notify, error) {
	env, err := lambdaenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	routes, err := env.Routes(ctx, "")
	if err != nil {
		return nil, err
	}
	topics := map[string]string{}
	var datasets map[string]route.Dataset
	if routes != nil {
		datasets = routes.Datasets
		for name, d := range routes.Datasets {
			topics[name] = d.Topic
		}
	}
	pub, err := notify.NewSNSPublisher(sns.NewFromConfig(env.AWS), os.Getenv("SNS_TOPIC_ARN"), topics)
	if err != nil {
		return nil, err
	}
	return handler.NewNotify(handler.NotifyConfig{
		Publisher: pub, Ledger: env.Ledger, Log: lambdacontext.NewLogger(),
		Datasets: datasets, Presigner: s3.NewPresignClient(env.S3), Credentials: env.AWS.Credentials,
	})
}
