package app

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/embedded"
	"github.com/ferrygw/ferry/gateway/internal/transferevents"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/putevents"
)

// authenticator is what both front ends need from the user store (sftpd also checks keys).
type authenticator interface {
	CheckPassword(ctx context.Context, name, password string, remote netip.Addr) (*users.User, error)
	CheckPublicKey(ctx context.Context, name string, key ssh.PublicKey, remote netip.Addr) (*users.User, error)
}

// newGatewayEvents sends the gateway's own events (Transfer Completed/Failed, Login Failed) to
// the embedded bus when it runs, else to EventBridge when a bus is configured; nil when neither.
// Publishing never blocks a transfer: both sinks queue, and drop (counted) when full. stop
// drains the queue at shutdown.
func newGatewayEvents(ctx context.Context, cfg *config.Config, local *embedded.System, reg prometheus.Registerer, logger *slog.Logger) (*transferevents.Events, func(), error) {
	logger = logger.With("component", "gateway-events")
	region := cfg.Storage.S3.Region
	var (
		sink  transferevents.Sink
		drain func(context.Context) error
	)
	switch eb := cfg.Events.EventBridge; {
	case local != nil && local.Bus() != nil:
		bs := transferevents.NewBusSink(local.Bus(), 0, logger)
		bs.Start(context.WithoutCancel(ctx))
		reg.MustRegister(bs)
		sink, drain = bs, bs.Close
	case eb.Bus != "":
		if eb.Region != "" {
			region = eb.Region
		}
		client, err := putevents.NewClient(ctx, region, eb.Endpoint)
		if err != nil {
			return nil, nil, err
		}
		pub, err := putevents.New(client, putevents.Config{BusName: eb.Bus, QueueSize: eb.QueueSize}, logger)
		if err != nil {
			return nil, nil, err
		}
		pub.Start(context.WithoutCancel(ctx))
		reg.MustRegister(pub)
		sink, drain = transferevents.NewEventBridgeSink(pub, logger), pub.Close
	default:
		return nil, func() {}, nil
	}
	events := transferevents.New(sink, transferevents.Config{Account: embedded.LocalAccount, Region: region, Logger: logger})
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		defer cancel()
		if err := drain(sctx); err != nil {
			logger.Warn("gateway events not all sent at shutdown", "err", err)
		}
	}
	return events, stop, nil
}
