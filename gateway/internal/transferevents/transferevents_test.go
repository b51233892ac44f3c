package transferevents

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// recorder is a Sink keeping every event, checked against the contract as it arrives.
type recorder struct {
	t  testing.TB
	mu sync.Mutex
	ev []event.GatewayEvent
	ch chan struct{}
}

func newRecorder(t testing.TB) *recorder { return &recorder{t: t, ch: make(chan struct{}, 1000)} }

func (r *recorder) Publish(e event.GatewayEvent) {
	if err := event.ValidateGateway(e); err != nil {
		r.t.Errorf("invalid event published: %v", err)
	}
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) events() []event.GatewayEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.GatewayEvent(nil), r.ev...)
}

// waitN waits until n events arrived, then a little longer to catch any extra one.
func (r *recorder) waitN(t testing.TB, n int) []event.GatewayEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for len(r.events()) < n {
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("got %d events, want %d: %+v", len(r.events()), n, r.events())
		}
	}
	time.Sleep(50 * time.Millisecond)
	got := r.events()
	if len(got) != n {
		t.Fatalf("got %d events, want exactly %d: %+v", len(got), n, got)
	}
	return got
}

type storeCase struct {
	name   string
	fsys   storage.FS
	bucket string
	prefix string // key prefix of the home
}

// stores returns a memstore and an s3store home over a real versitygw.
func stores(t *testing.T) []storeCase {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	st, err := s3store.New(srv.Client(), s3store.Config{Bucket: bucket, PartSize: 5 << 20, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	return []storeCase{
		{name: "memstore", fsys: memstore.New(), bucket: memstore.Bucket},
		{name: "s3store", fsys: st.Home("", "incoming/alice"), bucket: bucket, prefix: "incoming/alice/"},
	}
}

var opts = storage.CreateOptions{
	User: "alice", Protocol: "sftp", ClientAddr: "127.0.0.1:40001", TransferID: "tid-1", SessionID: "sess-1",
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestUploadEvents(t *testing.T) {
	for _, sc := range stores(t) {
		t.Run(sc.name, func(t *testing.T) {
			ctx := t.Context()
			if err := sc.fsys.Mkdir(ctx, "/dir"); err != nil {
				t.Fatal(err)
			}
			t.Run("completed", func(t *testing.T) {
				for _, size := range []int{0, 1000, 12<<20 + 7} { // empty, one PutObject, multipart
					rec := newRecorder(t)
					fsys := New(rec, Config{Account: "123456789012", Region: "eu-west-1"}).Wrap(sc.fsys, "fallback")
					data := randomBytes(t, size)
					before := time.Now().UTC()
					up, err := fsys.Create(ctx, "/dir/report ü.csv", opts)
					if err != nil {
						t.Fatal(err)
					}
					for chunk := range slicesChunk(data, 32<<10) {
						if _, err := up.Write(chunk); err != nil {
							t.Fatal(err)
						}
					}
					if got := rec.events(); len(got) != 0 {
						t.Fatalf("event before Close: %+v", got)
					}
					c, ok := storage.UploadAs[storage.Committer](up) // reachable through the decorator
					if !ok {
						t.Fatal("decorated upload hides Committer")
					}
					if obj, ok := c.Committed(); ok || obj.Bucket != sc.bucket || obj.Key != sc.prefix+"dir/report ü.csv" || obj.SHA256 != "" {
						t.Errorf("before Close: Committed() = %+v, %v", obj, ok)
					}
					if err := up.Close(); err != nil {
						t.Fatal(err)
					}
					if obj, ok := c.Committed(); !ok || obj.Size != int64(size) || obj.SHA256 != sum(data) || len(obj.ETag) < 3 {
						t.Errorf("after Close: Committed() = %+v, %v", obj, ok)
					}
					_ = up.Abort(errors.New("late abort")) // after a commit: no second event
					_ = up.Close()
					ev := rec.waitN(t, 1)[0]
					d := ev.Detail
					want := event.GatewayDetail{
						User: "alice", Protocol: "sftp", SessionID: "sess-1", ClientAddress: "127.0.0.1:40001",
						Bucket: sc.bucket, Key: sc.prefix + "dir/report ü.csv", Bytes: int64(size), SHA256: sum(data),
						TransferID: "tid-1", StartTime: d.StartTime, EndTime: d.EndTime,
					}
					if d != want {
						t.Errorf("size %d: detail\n got %+v\nwant %+v", size, d, want)
					}
					if ev.DetailType != event.DetailTypeTransferCompleted || ev.Source != event.SourceGateway ||
						ev.Account != "123456789012" || ev.Region != "eu-west-1" {
						t.Errorf("envelope %+v", ev)
					}
					if d.StartTime.Before(before.Add(-time.Second)) || d.EndTime.Before(d.StartTime) || time.Since(d.EndTime) > time.Minute {
						t.Errorf("times start %v end %v", d.StartTime, d.EndTime)
					}
					if len(ev.Resources) != 1 || ev.Resources[0] != event.BucketARN(sc.bucket) {
						t.Errorf("resources %v", ev.Resources)
					}
					// The object is what the event says.
					if h, ok := sc.fsys.(storage.Hasher); ok {
						got, err := h.SHA256(ctx, "/dir/report ü.csv")
						if err != nil || got != d.SHA256 {
							t.Errorf("stored sha256 %q (%v), event %q", got, err, d.SHA256)
						}
					}
				}
			})
			t.Run("aborted", func(t *testing.T) {
				rec := newRecorder(t)
				fsys := New(rec, Config{}).Wrap(sc.fsys, "sftp")
				up, err := fsys.Create(ctx, "/dir/partial.bin", opts)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := up.Write(randomBytes(t, 6<<20)); err != nil { // past one part on S3
					t.Fatal(err)
				}
				if err := up.Abort(errors.New("client gone")); err != nil {
					t.Fatal(err)
				}
				if err := up.Close(); !errors.Is(err, storage.ErrAborted) {
					t.Fatalf("close after abort: %v", err)
				}
				_ = up.Abort(nil)
				d := rec.waitN(t, 1)[0]
				checkFailed(t, d, sc, "dir/partial.bin", 6<<20, "aborted: client gone")
				if _, err := sc.fsys.Stat(ctx, "/dir/partial.bin"); err == nil {
					t.Error("aborted upload is visible")
				}
			})
			t.Run("context ends", func(t *testing.T) {
				rec := newRecorder(t)
				fsys := New(rec, Config{}).Wrap(sc.fsys, "sftp")
				cctx, cancel := context.WithCancelCause(ctx)
				up, err := fsys.Create(cctx, "/dir/dropped.bin", opts)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := up.Write([]byte("some")); err != nil {
					t.Fatal(err)
				}
				cancel(errors.New("connection lost")) // nobody calls Close or Abort
				d := rec.waitN(t, 1)[0]
				checkFailed(t, d, sc, "dir/dropped.bin", 4, "aborted: connection lost")
				if err := up.Close(); err == nil {
					t.Error("close after the context ended committed")
				}
				rec.waitN(t, 1)
			})
			t.Run("context already ended", func(t *testing.T) {
				rec := newRecorder(t)
				fsys := New(rec, Config{}).Wrap(sc.fsys, "sftp")
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				up, err := fsys.Create(cctx, "/dir/late.bin", opts)
				if err != nil { // refused at once (memstore): no transfer, no event
					time.Sleep(50 * time.Millisecond)
					if got := rec.events(); len(got) != 0 {
						t.Fatalf("events %+v", got)
					}
					return
				}
				_ = up.Close()
				checkFailed(t, rec.waitN(t, 1)[0], sc, "dir/late.bin", 0, "aborted")
			})
			t.Run("close fails", func(t *testing.T) {
				rec := newRecorder(t)
				fsys := New(rec, Config{}).Wrap(sc.fsys, "sftp")
				up, err := fsys.Create(ctx, "/dir/clash", opts)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := up.Write([]byte("data")); err != nil {
					t.Fatal(err)
				}
				// A directory appears where the file was to go: the commit must fail.
				if err := sc.fsys.Mkdir(ctx, "/dir/clash"); err != nil {
					t.Fatal(err)
				}
				if err := up.Close(); err == nil {
					t.Fatal("close over a directory succeeded")
				}
				d := rec.waitN(t, 1)[0]
				checkFailed(t, d, sc, "dir/clash", 4, "commit failed: ")
			})
			t.Run("mkdir and refused create", func(t *testing.T) {
				rec := newRecorder(t)
				fsys := New(rec, Config{}).Wrap(sc.fsys, "sftp")
				if err := fsys.Mkdir(ctx, "/marker"); err != nil {
					t.Fatal(err)
				}
				if _, err := fsys.Create(ctx, "/", opts); err == nil {
					t.Fatal("create of the home succeeded")
				}
				time.Sleep(50 * time.Millisecond)
				if got := rec.events(); len(got) != 0 {
					t.Fatalf("events for a directory or a refused create: %+v", got)
				}
			})
		})
	}
}

func checkFailed(t *testing.T, ev event.GatewayEvent, sc storeCase, key string, bytes int64, reasonPrefix string) {
	t.Helper()
	d := ev.Detail
	if ev.DetailType != event.DetailTypeTransferFailed {
		t.Fatalf("detail-type %q, want Transfer Failed: %+v", ev.DetailType, d)
	}
	if d.Bucket != sc.bucket || d.Key != sc.prefix+key || d.Bytes != bytes || d.SHA256 != "" ||
		d.User != "alice" || d.SessionID != "sess-1" || d.TransferID != "tid-1" || d.EndTime.IsZero() {
		t.Errorf("failed detail %+v", d)
	}
	if !strings.HasPrefix(d.FailureReason, reasonPrefix) || len(d.FailureReason) > maxReason {
		t.Errorf("failure_reason %q, want prefix %q", d.FailureReason, reasonPrefix)
	}
}

// slicesChunk yields b in pieces of n bytes (what a protocol's writes look like).
func slicesChunk(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			c := b[:min(n, len(b))]
			b = b[len(c):]
			if !yield(c) {
				return
			}
		}
	}
}

// TestOneEventUnderRaces aborts and closes concurrently: whatever wins, exactly one event, and
// Completed only if the object is there.
func TestOneEventUnderRaces(t *testing.T) {
	m := memstore.New()
	for i := range 100 {
		rec := newRecorder(t)
		fsys := New(rec, Config{}).Wrap(m, "sftp")
		ctx, cancel := context.WithCancel(t.Context())
		up, err := fsys.Create(ctx, "/race", opts)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = up.Write(bytes.Repeat([]byte{byte(i)}, 10))
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); _ = up.Close() }()
		go func() { defer wg.Done(); _ = up.Abort(errors.New("race")) }()
		go func() { defer wg.Done(); cancel() }()
		wg.Wait()
		ev := rec.waitN(t, 1)[0]
		cm, _ := storage.UploadAs[storage.Committer](up)
		c, _ := cm.Committed()
		_, committed := cm.Committed()
		if committed != (ev.DetailType == event.DetailTypeTransferCompleted) {
			t.Fatalf("round %d: committed=%v but event %q (%+v)", i, committed, ev.DetailType, c)
		}
		_ = m.Remove(t.Context(), "/race")
	}
}
