// Package app assembles a running gateway from a validated configuration: users, storage,
// protocol servers (behind a PROXY-protocol load balancer when configured), the metrics and health
// endpoints, with reload on SIGHUP and a draining shutdown.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/ftpd"
	"github.com/ferrygw/ferry/gateway/internal/health"
	"github.com/ferrygw/ferry/gateway/internal/hostkeys"
	"github.com/ferrygw/ferry/gateway/internal/proxyproto"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/sftpd"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
	"github.com/ferrygw/ferry/gateway/internal/transfermetrics"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/prometheus/client_golang/prometheus"
)

// ShutdownGrace is how long running transfers may take to finish after a stop signal.
const ShutdownGrace = 30 * time.Second

// server is what every listener-backed component provides, like net/http.Server.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// Run starts everything cfg enables and blocks until ctx is cancelled, then drains.
func Run(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	limiter := newMemoryLimiter(int64(cfg.MemoryLimit), logger)
	mem, err := transfermem.New(transfermem.Config{
		Limit: int64(cfg.Limits.TransferMemory), Wait: cfg.Limits.TransferMemoryWait, OnChange: limiter.onChange(),
	})
	if err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	mem.SetShare(int64(cfg.Limits.PerUser()))
	runMemory(ctx, limiter, mem)

	r := &runner{logger: logger}
	defer r.stop()
	var local *embedded
	s3cfg := cfg.Storage.S3
	if e := cfg.Embedded.S3; e.Enabled() {
		local, err = startEmbedded(cfg, logger)
		if err != nil {
			return err
		}
		defer local.close(logger) // after r.stop: the events of the last transfers still land
		// Served before the rest is built: the users file may be an object in it.
		if err := r.listen(named{name: "s3", addr: e.Listen, srv: local.s3}); err != nil {
			return err
		}
		r.serve()
	}
	// The gateway reaches the embedded endpoint through the same S3 client code as AWS.
	client, err := s3store.NewClient(ctx, s3ClientConfig(cfg))
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}

	userStore, err := openUsers(ctx, cfg, client, logger)
	if err != nil {
		return err
	}
	go userStore.Watch(ctx)
	go reloadOnHUP(ctx, userStore, logger)

	store, err := s3store.New(client, s3store.Config{
		Bucket:        s3cfg.Bucket,
		PartSize:      int64(s3cfg.PartSize),
		Concurrency:   s3cfg.Concurrency,
		MaxRenameKeys: s3cfg.MaxRenameKeys,
		Memory:        mem,
		Logger:        logger.With("component", "s3store"),
	})
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	reg := prometheus.NewRegistry()
	transfers := transfermetrics.New(reg)
	refused := registerLimits(reg, mem)
	events, stopEvents, err := newGatewayEvents(ctx, cfg, local, reg, logger)
	if err != nil {
		return err
	}
	defer stopEvents()
	homes := func(protocol string) func(u *users.User) (storage.FS, error) {
		return func(u *users.User) (storage.FS, error) {
			var fsys storage.FS = access.Restrict(store.UserHome(u.Name, u.Bucket, u.Home), u.Permissions)
			if events != nil {
				fsys = events.Wrap(fsys, protocol) // inside transfermetrics: it needs the upload's Committer
			}
			return transfers.Wrap(fsys, protocol), nil
		}
	}
	auth := func(protocol string) authenticator {
		if events == nil {
			return userStore
		}
		return events.Auth(userStore, protocol)
	}
	lbWrap, err := proxyWrapper(cfg, logger)
	if err != nil {
		return err
	}

	var servers []named
	var checker *health.Checker
	if cfg.Listen.Health != "" {
		checker, err = health.New(health.Config{
			ProbeS3: func(ctx context.Context) error {
				_, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s3cfg.Bucket)})
				return err
			},
			Users:  userStore.Loaded,
			Logger: logger,
		})
		if err != nil {
			return err
		}
		go checker.Run(ctx)
		// First of the front ends, so shut down last: it answers "draining" while they drain.
		servers = append(servers, named{name: "health", addr: cfg.Listen.Health, srv: newHTTP(checker.Handler()),
			wrap: lbWrap.optional})
	}
	if cfg.Listen.SFTP != "" {
		keys, err := hostkeys.Load(hostkeys.Config{
			Paths: cfg.HostKeys.Paths, Generate: cfg.HostKeys.Generate, PEM: cfg.HostKeys.PEM,
		}, logger.With("component", "hostkeys"))
		if err != nil {
			return err
		}
		srv, err := sftpd.New(sftpd.Config{
			HostKeys:         keys,
			IdleTimeout:      cfg.SFTP.IdleTimeout,
			LoginTimeout:     cfg.SFTP.LoginTimeout,
			MaxSessions:      cfg.SFTP.MaxSessions,
			Banner:           cfg.SFTP.Banner,
			WriteWindow:      int64(cfg.SFTP.WriteWindow),
			WriteWaitTimeout: cfg.SFTP.WriteWaitTimeout,
			MaxUploads:       cfg.Limits.UploadsPerSession,
			MaxChannels:      cfg.Limits.ChannelsPerConnection,
		}, sftpd.Deps{Auth: auth("sftp"), Storage: homes("sftp"), Memory: mem, Refused: refused("sftp"),
			Logger: logger.With("component", "sftpd", "protocol", "sftp")})
		if err != nil {
			return err
		}
		servers = append(servers, named{name: "sftp", addr: cfg.Listen.SFTP, srv: srv, wrap: lbWrap.required})
	}
	if cfg.Listen.FTP != "" || cfg.Listen.FTPSImplicit != "" {
		srv, err := newFTP(cfg, auth("ftp"), homes("ftp"), logger)
		if err != nil {
			return err
		}
		if cfg.Listen.FTP != "" {
			var ftp server = srv
			if cfg.Listen.ProxyProtocol.Enabled() {
				ftp = demuxFTP{srv} // control, implicit FTPS and passive data, by the port dialed
			}
			servers = append(servers, named{name: "ftp", addr: cfg.Listen.FTP, srv: ftp, wrap: lbWrap.required})
		}
		if cfg.Listen.FTPSImplicit != "" {
			servers = append(servers, named{name: "ftps-implicit", addr: cfg.Listen.FTPSImplicit, srv: implicitTLS{srv},
				wrap: lbWrap.required})
		}
	}
	if cfg.Listen.Metrics != "" {
		servers = append(servers, named{name: "metrics", addr: cfg.Listen.Metrics, srv: newHTTP(newMetricsMux(reg))})
	}
	if len(servers) == 0 {
		return errors.New("nothing to serve: every listener is disabled")
	}
	// Every listener is bound before any serves, so a taken port fails start-up cleanly.
	for _, s := range servers {
		if err := r.listen(s); err != nil {
			return err
		}
	}
	r.serve()
	onDrain := func() {}
	if checker != nil {
		onDrain = checker.SetDraining
	}
	return r.wait(ctx, onDrain)
}

// openUsers opens the users file. A local file must load (its problems stop start-up). An S3
// object may be unreadable or invalid at start (not written yet, S3 briefly away): the gateway
// then starts with nobody able to log in, reports itself not ready, and loads the users as
// soon as they can be read.
func openUsers(ctx context.Context, cfg *config.Config, client *s3.Client, logger *slog.Logger) (*users.Store, error) {
	bucket, key, isS3 := config.ParseS3URL(cfg.UsersFile)
	if !isS3 {
		return users.Open(cfg.UsersFile, logger)
	}
	return users.OpenSource(ctx, users.S3Object(client, bucket, key), users.Options{
		Logger: logger, PollInterval: cfg.UsersPollInterval, AllowUnloaded: true,
	})
}

// lbWrapper wraps the listeners a PROXY-protocol load balancer feeds (listen.proxy_protocol);
// with it off, both functions return the listener as it is.
type lbWrapper struct {
	required, optional func(net.Listener) net.Listener
}

func proxyWrapper(cfg *config.Config, logger *slog.Logger) (lbWrapper, error) {
	same := func(l net.Listener) net.Listener { return l }
	pp := cfg.Listen.ProxyProtocol
	if !pp.Enabled() {
		return lbWrapper{required: same, optional: same}, nil
	}
	trusted, err := pp.TrustedPrefixes()
	if err != nil {
		return lbWrapper{}, fmt.Errorf("listen.proxy_protocol: %w", err)
	}
	return lbWrapper{
		required: func(l net.Listener) net.Listener {
			return proxyproto.NewListener(l, proxyproto.Config{Trusted: trusted, Logger: logger})
		},
		// A health check may come with a header (an NLB with proxy protocol on may add one) or
		// without (a probe from inside the task).
		optional: func(l net.Listener) net.Listener {
			return proxyproto.NewListener(l, proxyproto.Config{Trusted: trusted, Optional: true, Logger: logger})
		},
	}, nil
}

func reloadOnHUP(ctx context.Context, store *users.Store, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := store.Reload(); err != nil {
				logger.Error("users reload refused; previous users stay in force", "err", err)
			}
		}
	}
}

func newFTP(cfg *config.Config, auth ftpd.Authenticator, homes func(*users.User) (storage.FS, error), logger *slog.Logger) (*ftpd.Server, error) {
	f := cfg.FTP
	first, last, err := f.PassiveRange()
	if err != nil {
		return nil, fmt.Errorf("ftp.passive_ports: %w", err)
	}
	// Behind a load balancer, every FTP port reaches listen.ftp (see ftpd.ServeDemux).
	behindLB := cfg.Listen.ProxyProtocol.Enabled() && cfg.Listen.FTP != ""
	return ftpd.New(ftpd.Config{
		PublicHost:      f.PublicHost,
		PassivePorts:    ftpd.PortRange{Start: first, End: last},
		PassiveHandoff:  behindLB,
		ImplicitTLSPort: f.ImplicitTLSPort,
		ActiveEnabled:   f.Active,
		TLS: ftpd.TLSConfig{
			Mode:          f.TLS.Mode,
			CertFile:      f.TLS.CertFile,
			KeyFile:       f.TLS.KeyFile,
			CertPEM:       f.TLS.CertPEM,
			KeyPEM:        f.TLS.KeyPEM,
			DevSelfSigned: f.TLS.DevSelfSigned,
		},
		IdleTimeout: f.IdleTimeout,
		Banner:      f.Banner,
		MaxClients:  f.MaxClients,
	}, ftpd.Deps{Auth: auth, Storage: homes, Logger: logger})
}

// implicitTLS serves the same FTP server on an implicit-TLS listener.
type implicitTLS struct{ *ftpd.Server }

func (s implicitTLS) Serve(l net.Listener) error { return s.ServeImplicitTLS(l) }

// demuxFTP serves the FTP server on the one listener a load balancer forwards every FTP port to.
type demuxFTP struct{ *ftpd.Server }

func (s demuxFTP) Serve(l net.Listener) error { return s.ServeDemux(l) }
