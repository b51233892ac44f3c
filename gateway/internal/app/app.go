// Package app assembles a running gateway from a validated configuration: users, storage,
// protocol servers and the metrics/health endpoint, with reload on SIGHUP and a draining shutdown.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/ftpd"
	"github.com/ferrygw/ferry/gateway/internal/hostkeys"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/sftpd"
	"github.com/ferrygw/ferry/gateway/internal/storage"
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
	startMemoryLimit(ctx, int64(cfg.MemoryLimit), logger)

	var (
		servers []named
		local   *embedded
		err     error
	)
	s3cfg := cfg.Storage.S3
	if e := cfg.Embedded.S3; e.Enabled() {
		local, err = startEmbedded(cfg, logger)
		if err != nil {
			return err
		}
		defer local.close(logger)
		servers = append(servers, named{"s3", e.Listen, local.s3})
	}
	// The gateway reaches the embedded endpoint through the same S3 client code as AWS.
	client, err := s3store.NewClient(ctx, s3ClientConfig(cfg))
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}

	userStore, err := users.Open(cfg.UsersFile, logger)
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
		Logger:        logger.With("component", "s3store"),
	})
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	reg := prometheus.NewRegistry()
	transfers := transfermetrics.New(reg)
	events, stopEvents, err := newGatewayEvents(ctx, cfg, local, reg, logger)
	if err != nil {
		return err
	}
	defer stopEvents()
	homes := func(protocol string) func(u *users.User) (storage.FS, error) {
		return func(u *users.User) (storage.FS, error) {
			var fsys storage.FS = access.Restrict(store.Home(u.Bucket, u.Home), u.Permissions)
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
		}, sftpd.Deps{Auth: auth("sftp"), Storage: homes("sftp"), Logger: logger.With("component", "sftpd", "protocol", "sftp")})
		if err != nil {
			return err
		}
		servers = append(servers, named{"sftp", cfg.Listen.SFTP, srv})
	}
	if cfg.Listen.FTP != "" || cfg.Listen.FTPSImplicit != "" {
		srv, err := newFTP(cfg, auth("ftp"), homes("ftp"), logger)
		if err != nil {
			return err
		}
		if cfg.Listen.FTP != "" {
			servers = append(servers, named{"ftp", cfg.Listen.FTP, srv})
		}
		if cfg.Listen.FTPSImplicit != "" {
			servers = append(servers, named{"ftps-implicit", cfg.Listen.FTPSImplicit, implicitTLS{srv}})
		}
	}
	if cfg.Listen.Metrics != "" {
		servers = append(servers, named{"metrics", cfg.Listen.Metrics, newHTTP(newMetricsMux(reg))})
	}
	if len(servers) == 0 {
		return errors.New("nothing to serve: every listener is disabled")
	}
	return serveAll(ctx, servers, logger)
}

type named struct {
	name, addr string
	srv        server
}

// serveAll binds every listener first (so a taken port fails start-up before anything serves),
// serves until ctx ends or a server fails, then shuts all down within ShutdownGrace.
func serveAll(ctx context.Context, servers []named, logger *slog.Logger) error {
	listeners := make([]net.Listener, 0, len(servers))
	for _, s := range servers {
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("listen %s on %s: %w", s.name, s.addr, err)
		}
		listeners = append(listeners, l)
	}
	errc := make(chan error, len(servers))
	for i, s := range servers {
		logger.Info("listening", "service", s.name, "addr", listeners[i].Addr().String())
		go func() {
			if err := s.srv.Serve(listeners[i]); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", s.name, err)
			}
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "grace", ShutdownGrace)
	case runErr = <-errc:
		logger.Error("server failed, shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	// Reverse order: front ends drain their transfers while the embedded S3 endpoint still serves.
	for i := len(servers) - 1; i >= 0; i-- {
		s := servers[i]
		if err := s.srv.Shutdown(sctx); err != nil {
			logger.Warn("shutdown", "service", s.name, "err", err)
		}
	}
	return runErr
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
	return ftpd.New(ftpd.Config{
		PublicHost:    f.PublicHost,
		PassivePorts:  ftpd.PortRange{Start: first, End: last},
		ActiveEnabled: f.Active,
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
