// Package s3server is the embedded S3-compatible endpoint: gofakes3 over the s3disk backend,
// behind SigV4 authentication with static credentials, with what gofakes3 v1.2.0 lacks added
// around it (aws-chunked bodies, checksums, object tagging, UploadPartCopy, conditional GETs,
// multipart ETags on GET/HEAD) and a synchronous hook after every successful write or delete.
package s3server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/johannesboyne/gofakes3"

	"github.com/ferrygw/ferry/gateway/internal/storage"

	"github.com/ferrygw/ferry/gateway/internal/embedded/s3disk"
	"github.com/ferrygw/ferry/gateway/internal/redact"
)

// ErrServerClosed is returned by Serve after Shutdown (net/http's).
var ErrServerClosed = http.ErrServerClosed

// Config configures the endpoint.
type Config struct {
	// DataDir holds buckets, objects and multipart uploads (see s3disk); one process at a time.
	DataDir string
	// AccessKey and Secret are the endpoint's own credentials (SigV4, headers or presigned
	// URL): the gateway's and the pipeline's, allowed everything.
	AccessKey, Secret string
	// Keys, if set, finds users' access keys, each confined to its Grant (see grant.go).
	Keys Keys
	// Region is the region clients must sign for; empty accepts any.
	Region string
	// Buckets are created at start unless they exist.
	Buckets []string
	// OnChange, if set, is called after every successful write or delete and before the S3
	// response is sent, from the request's goroutine (calls for different requests run
	// concurrently). An error makes the client see a 500, though the change has happened.
	OnChange func(context.Context, Change) error
	// MinPartSize overrides S3's 5 MiB minimum part size (tests); see s3disk.Options.
	MinPartSize int64
	// AbortIncompleteUploadsAfter aborts multipart uploads initiated longer ago, as the AWS
	// lifecycle rule AbortIncompleteMultipartUpload does; checked at start and then at a tenth
	// of it (at most hourly). 0 never does.
	AbortIncompleteUploadsAfter time.Duration
}

// Change is one successful write or delete.
type Change struct {
	Bucket, Key string
	Size        int64
	ETag        string // unquoted, as in S3 events: "<md5>" or "<md5>-<parts>"
	// Reason is the API that made the change: PutObject, CopyObject, CompleteMultipartUpload
	// or DeleteObject (also for each object a DeleteObjects request removed).
	Reason  string
	Deleted bool // Reason is DeleteObject
	// Sequencer orders changes to one key (hex, fixed width, compare as strings), as S3's does.
	Sequencer string
	RequestID string
	SourceIP  string
	Requester string // the access key that signed the request
	Time      time.Time
}

// Server serves the S3 API over a data directory.
type Server struct {
	cfg  Config
	log  *slog.Logger
	disk *s3disk.Backend
	http *http.Server
	reqs atomic.Uint64  // request IDs
	busy sync.WaitGroup // requests in flight

	stopExpiry chan struct{} // closed by Shutdown
	stopOnce   sync.Once
	expiryDone chan struct{} // closed when the expiry loop has stopped
}

// New opens the data directory and creates the configured buckets.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AccessKey == "" || cfg.Secret == "" {
		return nil, errors.New("s3server: access key and secret are required")
	}
	disk, err := s3disk.Open(cfg.DataDir, s3disk.Options{MinPartSize: cfg.MinPartSize, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("s3server: %w", err)
	}
	for _, b := range cfg.Buckets {
		if err := disk.EnsureBucket(b); err != nil {
			disk.Close()
			return nil, fmt.Errorf("s3server: create bucket %q: %w", b, err)
		}
	}
	logger = logger.With("component", "s3server")
	s := &Server{cfg: cfg, log: logger, disk: disk, stopExpiry: make(chan struct{}), expiryDone: make(chan struct{})}
	go s.expire()
	// Unique across restarts: request IDs never repeat.
	s.reqs.Store(uint64(time.Now().UnixNano()))
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Disk is the backend, for callers that need to look at objects directly.
func (s *Server) Disk() *s3disk.Backend { return s.disk }

// Serve accepts connections on l until Shutdown; it returns ErrServerClosed then.
func (s *Server) Serve(l net.Listener) error { return s.http.Serve(l) }

// Shutdown stops accepting, waits for requests in flight (until ctx ends, when it closes the
// remaining connections) and releases the data directory.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stopExpiry) })
	<-s.expiryDone
	err := s.http.Shutdown(ctx)
	if err != nil {
		// Closing the connections fails the body reads of uploads still running, which then
		// remove their temp files; give them a moment before the directory is released.
		s.http.Close()
		done := make(chan struct{})
		go func() { s.busy.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(shutdownGrace):
			s.log.Warn("requests still running after shutdown")
		}
	}
	if cerr := s.disk.Close(); err == nil {
		err = cerr
	}
	return err
}

const shutdownGrace = 5 * time.Second

// expire aborts incomplete multipart uploads older than AbortIncompleteUploadsAfter, at start
// and then periodically, until Shutdown.
func (s *Server) expire() {
	defer close(s.expiryDone)
	after := s.cfg.AbortIncompleteUploadsAfter
	if after <= 0 {
		return
	}
	every := min(max(after/10, 10*time.Millisecond), time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n := s.disk.ExpireUploads(time.Now().Add(-after)); n > 0 {
			s.log.Info("expired incomplete multipart uploads", "uploads", n, "older_than", after)
		}
		select {
		case <-s.stopExpiry:
			return
		case <-t.C:
		}
	}
}

// ServeHTTP authenticates the request, decodes its body, serves what gofakes3 lacks and
// hands the rest to a gofakes3 instance bound to this request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.busy.Add(1)
	defer s.busy.Done()
	id := s.reqs.Add(1)
	st := &reqState{s: s, r: r, id: fmt.Sprintf("%016X", id), sourceIP: sourceIP(r),
		transferID: storage.TransferIDFromUserAgent(r.Header.Get("User-Agent"))}
	w.Header().Set("x-amz-request-id", st.id)
	w.Header().Set("Server", "Ferry")

	if r.Method == http.MethodOptions {
		s.gofakes3(st, id).ServeHTTP(w, r) // CORS preflight carries no credentials
		return
	}
	auth, aerr := s.authenticate(r, time.Now())
	if aerr != nil {
		s.log.Info("request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "code", aerr.code, "reason", aerr.msg,
			"transfer_id", st.transferID)
		writeError(w, r, st.id, aerr)
		return
	}
	st.requester = auth.accessKey
	if auth.grant != nil {
		st.requester = auth.grant.User // the uploader S3's events name
	}
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "query", redact.String(r.URL.RawQuery), "remote", r.RemoteAddr,
		"request_id", st.id, "user", st.requester, "transfer_id", st.transferID, "payload", auth.payloadHash, "content_encoding", r.Header.Get("Content-Encoding"),
		"trailer", r.Header.Get("X-Amz-Trailer"))
	if aerr := prepareBody(r, auth); aerr != nil {
		writeError(w, r, st.id, aerr)
		return
	}
	if auth.grant != nil {
		if err := s.authorize(r, st, auth.grant); err != nil {
			var ref *refusal
			if errors.As(err, &ref) {
				s.log.Info("request refused", "user", auth.grant.User, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
					"request_id", st.id, "reason", ref.why)
				writeError(w, r, st.id, denied("AccessDenied", "Access Denied"))
				return
			}
			writeS3Error(w, r, st.id, err)
			return
		}
	}
	if s.serveExtra(w, r, st) {
		return
	}
	rw := &respWriter{ResponseWriter: w, st: st}
	s.gofakes3(st, id).ServeHTTP(rw, r)
	if !rw.wrote { // a HEAD or an empty 200: let WriteHeader add its headers
		rw.WriteHeader(http.StatusOK)
	}
}

// gofakes3 builds the S3 router for one request: cheap (a struct and its options), and it
// lets the backend know which request it serves, which gofakes3's Backend API does not pass.
func (s *Server) gofakes3(st *reqState, id uint64) http.Handler {
	return gofakes3.New(&reqBackend{s: s, disk: s.disk, st: st},
		gofakes3.WithRequestID(id-1),      // gofakes3 adds one before using it
		gofakes3.WithTimeSkewLimit(0),     // authenticate checks the clock
		gofakes3.WithMetadataSizeLimit(0), // s3disk limits user metadata as S3 does
		gofakes3.WithLogger(gofakesLog{s.log}),
	).Server()
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// reqState is what the request-bound backend and response writer share.
type reqState struct {
	s          *Server
	r          *http.Request
	id         string
	sourceIP   string
	requester  string
	transferID string // from the User-Agent of a gateway transfer's requests; "" for others

	etag     string             // full ETag for GET/HEAD (gofakes3 cannot send "-N")
	tagCount int                // x-amz-tagging-count for GET/HEAD
	errCode  gofakes3.ErrorCode // last backend error, for codes gofakes3 has no status for
}

// respWriter corrects what gofakes3 writes: multipart ETags, tag counts, and the status of
// S3 error codes gofakes3 does not know (it sends 500 for those).
type respWriter struct {
	http.ResponseWriter
	st    *reqState
	wrote bool
}

func (w *respWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		if code == http.StatusInternalServerError && w.st.errCode != "" {
			code = statusOf(w.st.errCode)
		}
		if code < 400 {
			if w.st.etag != "" {
				w.Header().Set("ETag", w.st.etag)
			}
			if w.st.tagCount > 0 {
				w.Header().Set("x-amz-tagging-count", fmt.Sprint(w.st.tagCount))
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps net/http's sendfile path for object bodies.
func (w *respWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

func (w *respWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// statusOf is the HTTP status of an S3 error code, including those gofakes3 does not know.
func statusOf(code gofakes3.ErrorCode) int {
	switch code {
	case codeSHA256Mismatch:
		return http.StatusBadRequest
	case codeSignatureMismatch:
		return http.StatusForbidden
	}
	return s3disk.Status(code)
}

// gofakesLog sends gofakes3's messages to slog at debug: the errors it reports are the
// backend's, which reqBackend.fail logs once with the request's details, or a client that
// hung up while a response was written.
type gofakesLog struct{ l *slog.Logger }

func (g gofakesLog) Print(level gofakes3.LogLevel, v ...any) {
	g.l.Debug(fmt.Sprint(v...), "source", "gofakes3", "level", string(level))
}
