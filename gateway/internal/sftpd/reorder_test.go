package sftpd

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// slowBuffer is a storage stand-in that records what it is given, optionally slowly, and can fail.
type slowBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	delay  time.Duration
	failAt int64 // fail the write that would pass this many bytes (0 = never)
	writes int
}

func (s *slowBuffer) Write(p []byte) (int, error) {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.failAt > 0 && int64(s.buf.Len()+len(p)) > s.failAt {
		return 0, errors.New("disk on fire")
	}
	return s.buf.Write(p)
}

func (s *slowBuffer) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.buf.Bytes())
}

type op struct {
	off  int64
	data string
}

func TestReorderTable(t *testing.T) {
	tests := []struct {
		name     string
		window   int64
		ops      []op
		wantErr  error // from the failing WriteAt, if any
		closeErr error
		want     string
	}{
		{name: "in order", window: 8, ops: []op{{0, "ab"}, {2, "cd"}, {4, "ef"}}, want: "abcdef"},
		{name: "reversed within window", window: 8, ops: []op{{4, "ef"}, {2, "cd"}, {0, "ab"}}, want: "abcdef"},
		{name: "empty file", window: 8, ops: nil, want: ""},
		{name: "zero-length write anywhere is a no-op", window: 8, ops: []op{{100, ""}, {0, "a"}}, want: "a"},
		{name: "single byte", window: 8, ops: []op{{0, "x"}}, want: "x"},
		{name: "duplicate identical write", window: 8, ops: []op{{2, "cd"}, {2, "cd"}, {0, "ab"}}, want: "abcd"},
		{name: "overlap identical fills holes", window: 16, ops: []op{{2, "c"}, {5, "f"}, {1, "bcdefg"}, {0, "a"}}, want: "abcdefg"},
		{name: "write larger than window at next", window: 2, ops: []op{{0, "abcdefgh"}}, want: "abcdefgh"},
		{name: "rewrite below stored data", window: 8, ops: []op{{0, "ab"}, {0, "ab"}}, wantErr: errRewrite, closeErr: errRewrite, want: "ab"},
		{name: "straddling stored data", window: 8, ops: []op{{0, "ab"}, {1, "bc"}}, wantErr: errRewrite, closeErr: errRewrite, want: "ab"},
		{name: "conflicting overlap", window: 8, ops: []op{{2, "cd"}, {3, "XY"}}, wantErr: errConflict, closeErr: errConflict, want: ""},
		{name: "gap at close", window: 8, ops: []op{{0, "ab"}, {4, "ef"}}, closeErr: errGapAtClose, want: "ab"},
		{name: "only a later part", window: 8, ops: []op{{3, "d"}}, closeErr: errGapAtClose, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &slowBuffer{}
			r := newReorderWriter(t.Context(), sink, tt.window, time.Second)
			var gotErr error
			for _, o := range tt.ops {
				if _, err := r.WriteAt([]byte(o.data), o.off); err != nil {
					gotErr = err
					break
				}
			}
			if !errors.Is(gotErr, tt.wantErr) || (tt.wantErr == nil && gotErr != nil) {
				t.Fatalf("write error = %v, want %v", gotErr, tt.wantErr)
			}
			closeErr := r.Close()
			if !errors.Is(closeErr, tt.closeErr) || (tt.closeErr == nil && closeErr != nil) {
				t.Fatalf("close error = %v, want %v", closeErr, tt.closeErr)
			}
			if got := string(sink.bytes()); got != tt.want {
				t.Fatalf("stored %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReorderWriteAfterClose(t *testing.T) {
	r := newReorderWriter(t.Context(), &slowBuffer{}, 8, time.Second)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteAt([]byte("a"), 0); !errors.Is(err, errWriterClose) {
		t.Fatalf("write after close = %v", err)
	}
}

func TestReorderStorageErrorIsSticky(t *testing.T) {
	sink := &slowBuffer{failAt: 3}
	r := newReorderWriter(t.Context(), sink, 8, time.Second)
	if _, err := r.WriteAt([]byte("ab"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteAt([]byte("cd"), 2); err == nil {
		t.Fatal("write past failure point succeeded")
	}
	if _, err := r.WriteAt([]byte("ef"), 4); err == nil {
		t.Fatal("write after failure succeeded")
	}
	if err := r.Close(); err == nil {
		t.Fatal("close after storage failure succeeded")
	}
}

// A write beyond the window waits for the gap to fill instead of buffering without bound.
func TestReorderBackpressure(t *testing.T) {
	sink := &slowBuffer{}
	r := newReorderWriter(t.Context(), sink, 4, 5*time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := r.WriteAt([]byte("ef"), 4) // [4,6) > written(0)+4: must wait
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("write beyond window returned early: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := r.WriteAt([]byte("abcd"), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting write not released after the gap filled")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := string(sink.bytes()); got != "abcdef" {
		t.Fatalf("stored %q", got)
	}
}

func TestReorderWaitTimesOut(t *testing.T) {
	r := newReorderWriter(t.Context(), &slowBuffer{}, 4, 100*time.Millisecond)
	start := time.Now()
	_, err := r.WriteAt([]byte("zz"), 10)
	if !errors.Is(err, errGapTimeout) {
		t.Fatalf("err = %v, want gap timeout", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 3*time.Second {
		t.Fatalf("timed out after %v", d)
	}
	if err := r.Close(); !errors.Is(err, errGapTimeout) {
		t.Fatalf("close = %v", err)
	}
}

func TestReorderWaitEndsOnCancelAndAbort(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	r := newReorderWriter(ctx, &slowBuffer{}, 4, time.Minute)
	gone := errors.New("session gone")
	go func() { time.Sleep(30 * time.Millisecond); cancel(gone) }()
	if _, err := r.WriteAt([]byte("zz"), 10); !errors.Is(err, gone) {
		t.Fatalf("err = %v, want %v", err, gone)
	}

	r = newReorderWriter(t.Context(), &slowBuffer{}, 4, time.Minute)
	cause := errors.New("transfer error")
	go func() { time.Sleep(30 * time.Millisecond); r.Abort(cause) }()
	if _, err := r.WriteAt([]byte("zz"), 10); !errors.Is(err, cause) {
		t.Fatalf("err = %v, want %v", err, cause)
	}
}

// TestReorderRandomized writes a random file as chunks of random sizes, shuffled within a
// bounded distance (like several workers racing), from several goroutines against a slow sink,
// and checks the stored stream is exactly the file.
func TestReorderRandomized(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	var ok, refused int
	defer func() { t.Logf("%d uploads reassembled, %d refused a late duplicate", ok, refused) }()
	for iter := 0; iter < 60 && time.Now().Before(deadline); iter++ {
		seed := uint64(iter)
		rng := rand.New(rand.NewPCG(seed, 42))
		size := rng.IntN(64 << 10)
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		var chunks []op
		for off := 0; off < size; {
			n := 1 + rng.IntN(4096)
			n = min(n, size-off)
			chunks = append(chunks, op{int64(off), string(data[off : off+n])})
			off += n
		}
		// Bounded displacement: shuffle inside sliding groups of up to 8, then dispatch the
		// packets through a FIFO to 8 workers, as pkg/sftp does.
		for i := 0; i < len(chunks); i += 8 {
			g := chunks[i:min(i+8, len(chunks))]
			rng.Shuffle(len(g), func(a, b int) { g[a], g[b] = g[b], g[a] })
		}
		// Occasionally duplicate a chunk (identical data must be accepted).
		if len(chunks) > 2 && rng.IntN(4) == 0 {
			k := rng.IntN(len(chunks) - 1)
			chunks = append(chunks[:k+1], append([]op{chunks[k]}, chunks[k+1:]...)...)
		}
		sink := &slowBuffer{}
		if rng.IntN(3) == 0 {
			sink.delay = 20 * time.Microsecond
		}
		window := int64(16<<10 + rng.IntN(32<<10))
		r := newReorderWriter(t.Context(), sink, window, 5*time.Second)
		fifo := make(chan op)
		var wg sync.WaitGroup
		var errMu sync.Mutex
		var writeErr error
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for o := range fifo {
					// Writes that arrive after the duplicated chunk's first copy was flushed
					// are rewrites; only accept that specific error for exact duplicates.
					if _, err := r.WriteAt([]byte(o.data), o.off); err != nil {
						errMu.Lock()
						if writeErr == nil {
							writeErr = err
						}
						errMu.Unlock()
					}
				}
			}()
		}
		for _, c := range chunks {
			fifo <- c
		}
		close(fifo)
		wg.Wait()
		closeErr := r.Close()
		if writeErr != nil {
			// A duplicate arriving after its first copy was stored is refused as a rewrite,
			// and then the whole upload must fail.
			if !errors.Is(writeErr, errRewrite) || closeErr == nil {
				t.Fatalf("seed %d: write error %v, close %v", seed, writeErr, closeErr)
			}
			refused++
			continue
		}
		if closeErr != nil {
			t.Fatalf("seed %d: close: %v", seed, closeErr)
		}
		if got := sink.bytes(); !bytes.Equal(got, data) {
			t.Fatalf("seed %d: stored %d bytes, want %d (equal prefix %d)", seed, len(got), len(data), commonPrefix(got, data))
		}
		ok++
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
