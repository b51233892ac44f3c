package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/ferrygw/ferry/gateway/internal/ftpd"
	"github.com/ferrygw/ferry/gateway/internal/sftpd"
)

// named is one listener-backed service.
type named struct {
	name, addr string
	srv        server
	// wrap, when set, wraps the bound listener (PROXY protocol behind a load balancer).
	wrap func(net.Listener) net.Listener
}

// runner binds and serves services and shuts them down in the reverse order of binding.
type runner struct {
	logger  *slog.Logger
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
		r.logger.Info("shutting down", "grace", ShutdownGrace)
	case runErr = <-r.errc:
		r.logger.Error("server failed, shutting down", "err", runErr)
	}
	onDrain()
	r.stop()
	return runErr
}

// stop shuts down what serves within ShutdownGrace, in reverse order (front ends drain their
// transfers while the embedded S3 endpoint, bound first, still serves), and closes what was
// bound but never served. It is idempotent.
func (r *runner) stop() {
	if r.stopped {
		return
	}
	r.stopped = true
	for _, b := range r.bound[r.served:] {
		b.l.Close()
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	for i := r.served - 1; i >= 0; i-- {
		b := r.bound[i]
		if err := b.srv.Shutdown(sctx); err != nil {
			r.logger.Warn("shutdown", "service", b.name, "err", err)
		}
	}
}
