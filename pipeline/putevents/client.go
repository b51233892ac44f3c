package putevents

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
)

// NewClient builds an EventBridge client from the SDK's standard credential chain. Endpoint
// overrides the service address (a VPC endpoint, or a local test server); empty = AWS.
func NewClient(ctx context.Context, region, endpoint string) (*awseventbridge.Client, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("eventbridge client: load aws config: %w", err)
	}
	return awseventbridge.NewFromConfig(cfg, func(o *awseventbridge.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}
