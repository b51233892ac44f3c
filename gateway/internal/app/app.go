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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/embedded"
	"github.com/ferrygw/ferry/gateway/internal/ftpd"
	"github.com/ferrygw/ferry/gateway/internal/health"
	"github.com/ferrygw/ferry/gateway/internal/hostkeys"
	"github.com/ferrygw/ferry/gateway/internal/proxyproto"
	"github.com/ferrygw/ferry/gateway/internal/recovery"
	"github.com/ferrygw/ferry/gateway/internal/s3metrics"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/sessionmetrics"
	"github.com/ferrygw/ferry/gateway/internal/sessions"
	"github.com/ferrygw/ferry/gateway/internal/sftpd"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/transferevents"
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
	"github.com/ferrygw/ferry/gateway/internal/transfermetrics"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/event"
)

// ShutdownGrace bounds the last steps of a stop after the front ends have drained (config
// drain_timeout): sending the queued gateway events and closing the embedded event bus.
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

	r := &runner{logger: logger, drain: cfg.DrainTimeout}
	defer r.stop()
	var local *embedded.System
	reg := prometheus.NewRegistry()
	s3cfg := cfg.Storage.S3
	if e := cfg.Embedded.S3; e.Enabled() {
		local, err = embedded.Start(cfg, logger)
		if err != nil {
			return err
		}
		defer func() { // after r.stop: the events of the last transfers still land
			ctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
			defer cancel()
			local.Close(ctx, logger)
		}()
		reg.MustRegister(local.Metrics())
		// Served before the rest is built: the users file may be an object in it.
		if err := r.listen(named{name: "s3", addr: e.Listen, srv: local.S3()}); err != nil {
			return err
		}
		r.serve()
	}
	// The gateway reaches the embedded endpoint through the same S3 client code as AWS.
	cc := s3ClientConfig(cfg)
	cc.Options = append(cc.Options, s3metrics.New(reg).Option())
	client, err := s3store.NewClient(ctx, cc)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}

	userStore, err := openUsers(ctx, cfg, client, logger)
	if err != nil {
		return err
	}
	go userStore.Watch(ctx)
	go reloadOnHUP(ctx, userStore, logger)
	if local != nil {
		local.UseUsers(userStore, logger)
	}

	transfers := transfermetrics.New(reg)
	sessionCounts := sessionmetrics.New(reg)
	refused := registerLimits(reg, mem)
	events, stopEvents, err := newGatewayEvents(ctx, cfg, local, reg, logger)
	if err != nil {
		return err
	}
	defer stopEvents()
	journal, err := newJournal(cfg, client, events, reg, logger)
	if err != nil {
		return err
	}
	scfg := s3store.Config{
		Bucket:        s3cfg.Bucket,
		PartSize:      int64(s3cfg.PartSize),
		Concurrency:   s3cfg.Concurrency,
		MaxRenameKeys: s3cfg.MaxRenameKeys,
		Memory:        mem,
		Logger:        logger,
	}
	if journal != nil {
		scfg.Journal = journal
		// Before serving: what a previous run or a replica gone left is aborted first.
		journal.Start(ctx)
	}
	store, err := s3store.New(client, scfg)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	guard, err := newDefender(cfg, reg, events, sessionCounts, logger)
	if err != nil {
		return err
	}
	// Open sessions follow the users file: revoked users are disconnected.
	openSessions := sessions.New(userStore.Lookup, logger, reg)
	defer userStore.Subscribe(openSessions.Changed)()
	homes := func(protocol string) func(u *users.User) (storage.FS, error) {
		return func(u *users.User) (storage.FS, error) {
			// The permissions in force at each operation, not at login.
			var fsys storage.FS = access.Live(store.UserHome(u.Name, u.Bucket, u.Home), livePermissions(userStore, u), access.User(u.Name))
			if events != nil {
				fsys = events.Wrap(fsys, protocol) // inside transfermetrics: it needs the upload's Committer
			}
			return transfers.Wrap(fsys, protocol), nil
		}
	}
	// The defender outermost: a banned address reaches neither the password check nor the
	// Login Failed events (its ban is one Client Banned event).
	auth := func(protocol string) authenticator {
		var a authenticator = userStore.ForProtocol(protocol)
		if events != nil {
			a = events.Auth(a, protocol)
		}
		return guard.Auth(a, protocol)
	}
	lbWrap, err := proxyWrapper(cfg, logger)
	if err != nil {
		return err
	}

	var servers []named
	// S3 is probed whether or not listen.health serves the answer: the front ends refuse new
	// logins with a temporary error while S3 does not answer.
	checker, err := health.New(health.Config{
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
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_ready",
			Help: "1 while /readyz would answer 200 (S3 answers, users loaded, not draining), else 0."},
			func() float64 { return boolGauge(checker.Ready() == nil) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_s3_available",
			Help: "1 while S3 answered its last probe (HeadBucket), else 0: new logins are refused meanwhile."},
			func() float64 { return boolGauge(checker.S3Available() == nil) }),
	)
	if cfg.Listen.Health != "" {
		// Shut down after the front ends: it answers "draining" while they drain.
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
			LegacyAlgorithms: cfg.SFTP.LegacyAlgorithms,
			MaxUploads:       cfg.Limits.UploadsPerSession,
			MaxChannels:      cfg.Limits.ChannelsPerConnection,
		}, sftpd.Deps{Auth: auth("sftp"), Storage: homes("sftp"), Memory: mem, Refused: refused("sftp"),
			Logger:    logger.With("component", "sftpd", "protocol", "sftp"),
			Available: checker.S3Available, Observer: sessionCounts, Gate: guard, Sessions: openSessions})
		if err != nil {
			return err
		}
		servers = append(servers, named{name: "sftp", addr: cfg.Listen.SFTP, srv: srv, wrap: lbWrap.required, frontEnd: true})
	}
	if cfg.Listen.FTP != "" || cfg.Listen.FTPSImplicit != "" {
		srv, err := newFTP(cfg, ftpd.Deps{Auth: auth("ftp"), Storage: homes("ftp"), Logger: logger,
			Available: checker.S3Available, Observer: sessionCounts, Gate: guard, Sessions: openSessions})
		if err != nil {
			return err
		}
		registerFTPMetrics(reg, srv)
		if cfg.Listen.FTP != "" {
			var ftp server = srv
			if cfg.Listen.ProxyProtocol.Enabled() {
				ftp = demuxFTP{srv} // control, implicit FTPS and passive data, by the port dialed
			}
			servers = append(servers, named{name: "ftp", addr: cfg.Listen.FTP, srv: ftp, wrap: lbWrap.required, frontEnd: true})
		}
		if cfg.Listen.FTPSImplicit != "" {
			servers = append(servers, named{name: "ftps-implicit", addr: cfg.Listen.FTPSImplicit, srv: implicitTLS{srv},
				wrap: lbWrap.required, frontEnd: true})
		}
	}
	if cfg.Listen.Metrics != "" {
		servers = append(servers, named{name: "metrics", addr: cfg.Listen.Metrics, srv: newHTTP(newMetricsMux(reg))})
	}
	if cfg.Listen.PProf != "" {
		logger.Warn("profiling enabled: Go's profiles are served on listen.pprof", "addr", cfg.Listen.PProf)
		servers = append(servers, named{name: "pprof", addr: cfg.Listen.PProf, srv: newHTTP(newPprofMux())})
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
	// Serve once S3 has been asked (a few ms when it answers, at most the probe's timeout when
	// it does not), so the first clients get the right answer: served, or told to come back.
	select {
	case <-checker.FirstProbe():
	case <-ctx.Done():
	}
	r.serve()
	err = r.wait(ctx, checker.SetDraining)
	if journal != nil {
		journal.Close(context.WithoutCancel(ctx)) // every upload has ended: the heartbeat goes
	}
	return err
}

// newJournal is the upload journal (package recovery), nil when recovery.prefix is empty.
func newJournal(cfg *config.Config, client *s3.Client, events *transferevents.Events, reg prometheus.Registerer, logger *slog.Logger) (*recovery.Journal, error) {
	rc := cfg.Recovery
	if rc.Prefix == "" {
		return nil, nil
	}
	var failed func(event.GatewayDetail)
	if events != nil {
		failed = events.Failed
	}
	j, err := recovery.New(client, recovery.Config{
		Bucket: cfg.Storage.S3.Bucket, Prefix: rc.Prefix, ReplicaID: rc.ReplicaID,
		Heartbeat: rc.Heartbeat, StaleAfter: rc.StaleAfter, Logger: logger, Failed: failed,
	})
	if err != nil {
		return nil, err
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ferry_orphan_uploads_aborted_total",
		Help: "Multipart uploads of a gateway process gone (crash, kill) that this replica aborted.",
	}, func() float64 { return float64(j.Recovered()) }))
	return j, nil
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

func newFTP(cfg *config.Config, deps ftpd.Deps) (*ftpd.Server, error) {
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
		IdleTimeout:  f.IdleTimeout,
		LoginTimeout: f.LoginTimeout,
		Banner:       f.Banner,
		MaxClients:   f.MaxClients,
	}, deps)
}

// implicitTLS serves the same FTP server on an implicit-TLS listener.
type implicitTLS struct{ *ftpd.Server }

func (s implicitTLS) Serve(l net.Listener) error { return s.ServeImplicitTLS(l) }

// demuxFTP serves the FTP server on the one listener a load balancer forwards every FTP port to.
type demuxFTP struct{ *ftpd.Server }

func (s demuxFTP) Serve(l net.Listener) error { return s.ServeDemux(l) }

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
