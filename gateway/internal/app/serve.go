package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/ftpd"
	"github.com/ferrygw/ferry/gateway/internal/sftpd"
)

// named is one listener-backed service.
type named struct {
	name, addr string
	srv        server
	// wrap, when set, wraps the bound listener (PROXY protocol behind a load balancer).
	wrap func(net.Listener) net.Listener
	// frontEnd services (SFTP, FTP) carry transfers: at a stop they all stop accepting at once
	// and drain together, while the others (health, metrics, the embedded S3 endpoint) serve on.
	frontEnd bool
}

// runner binds and serves services and shuts them down in the reverse order of binding.
type runner struct {
	logger  *slog.Logger
	drain   time.Duration // how long front ends' transfers may run on after a stop (drain_timeout)
	bound   []bound
	served  int        // bound[:served] are serving
	errc    chan error // a server that failed
	stopped bool
}

type bound struct {
	named
	l net.Listener
}

// listen binds s's address; it serves at the next serve.
func (r *runner) listen(s named) error {
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen %s on %s: %w", s.name, s.addr, err)
	}
	if s.wrap != nil {
		l = s.wrap(l)
	}
	r.bound = append(r.bound, bound{named: s, l: l})
	return nil
}

// serve starts serving every bound listener not yet served.
func (r *runner) serve() {
	if r.errc == nil {
		r.errc = make(chan error, 16)
	}
	for _, b := range r.bound[r.served:] {
		r.logger.Info("listening", "service", b.name, "addr", b.l.Addr().String())
		go func() {
			err := b.srv.Serve(b.l)
			if err != nil && !isClosed(err) {
				select {
				case r.errc <- fmt.Errorf("%s: %w", b.name, err):
				default:
				}
			}
		}()
	}
	r.served = len(r.bound)
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) ||
		errors.Is(err, ftpd.ErrServerClosed) || errors.Is(err, sftpd.ErrServerClosed)
}

// wait serves until ctx ends or a server fails, calls onDrain, then shuts everything down.
func (r *runner) wait(ctx context.Context, onDrain func()) error {
	var runErr error
	select {
	case <-ctx.Done():
		r.logger.Info("shutting down: no new connections; transfers in progress may finish", "drain_timeout", r.drain)
	case runErr = <-r.errc:
		r.logger.Error("server failed, shutting down", "err", runErr)
	}
	onDrain()
	r.stop()
	return runErr
}

// stop closes what was bound but never served, then drains: every front end stops accepting at
// once and their transfers run on together for up to the drain timeout, after which the front
// ends abort the rest (no object, no pending multipart upload, a Transfer Failed event). Health
// (answering "draining"), metrics and the embedded S3 endpoint serve meanwhile, and are shut
// down last, in reverse order of binding, within ShutdownGrace. It is idempotent.
func (r *runner) stop() {
	if r.stopped {
		return
	}
	r.stopped = true
	for _, b := range r.bound[r.served:] {
		b.l.Close()
	}
	served := r.bound[:r.served]
	start := time.Now()
	dctx, cancel := context.WithTimeout(context.Background(), r.drain)
	var wg sync.WaitGroup
	for _, b := range served {
		if !b.frontEnd {
			continue
		}
		wg.Go(func() {
			if err := b.srv.Shutdown(dctx); err != nil {
				r.logger.Warn("drain timeout: transfers still running were aborted", "service", b.name,
					"drain_timeout", r.drain, "err", err)
				return
			}
			r.logger.Info("drained", "service", b.name, "after", time.Since(start).Round(time.Millisecond))
		})
	}
	wg.Wait()
	cancel()
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	for i := len(served) - 1; i >= 0; i-- {
		if b := served[i]; !b.frontEnd {
			if err := b.srv.Shutdown(sctx); err != nil {
				r.logger.Warn("shutdown", "service", b.name, "err", err)
			}
		}
	}
}
