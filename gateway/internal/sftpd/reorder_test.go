package sftpd

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
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

// testMem is a transfer memory budget of the default size.
func testMem(t testing.TB) *transfermem.Budget {
	t.Helper()
	b, err := transfermem.New(transfermem.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return b
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
			r := newReorderWriter(t.Context(), sink, tt.window, time.Second, testMem(t))
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
	r := newReorderWriter(t.Context(), &slowBuffer{}, 8, time.Second, testMem(t))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteAt([]byte("a"), 0); !errors.Is(err, errWriterClose) {
		t.Fatalf("write after close = %v", err)
	}
}

func TestReorderStorageErrorIsSticky(t *testing.T) {
	sink := &slowBuffer{failAt: 3}
	r := newReorderWriter(t.Context(), sink, 8, time.Second, testMem(t))
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
// The waits below run in a synctest bubble: time is virtual, so "still blocked" and "timed out
// after exactly the timeout" are facts, not guesses made with sleeps.

func TestReorderBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &slowBuffer{}
		r := newReorderWriter(t.Context(), sink, 4, 5*time.Second, testMem(t))
		done := make(chan error, 1)
		go func() {
			_, err := r.WriteAt([]byte("ef"), 4) // [4,6) > written(0)+4: must wait
			done <- err
		}()
		synctest.Wait() // the writer is blocked on the window
		select {
		case err := <-done:
			t.Fatalf("write beyond window returned early: %v", err)
		default:
		}
		if _, err := r.WriteAt([]byte("abcd"), 0); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatal("waiting write not released after the gap filled")
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if got := string(sink.bytes()); got != "abcdef" {
			t.Fatalf("stored %q", got)
		}
	})
}

func TestReorderWaitTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 100 * time.Millisecond
		r := newReorderWriter(t.Context(), &slowBuffer{}, 4, timeout, testMem(t))
		start := time.Now()
		_, err := r.WriteAt([]byte("zz"), 10)
		if !errors.Is(err, errGapTimeout) {
			t.Fatalf("err = %v, want gap timeout", err)
		}
		if d := time.Since(start); d != timeout {
			t.Fatalf("timed out after %v, want %v", d, timeout)
		}
		if err := r.Close(); !errors.Is(err, errGapTimeout) {
			t.Fatalf("close = %v", err)
		}
	})
}

func TestReorderWaitEndsOnCancelAndAbort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		r := newReorderWriter(ctx, &slowBuffer{}, 4, time.Minute, testMem(t))
		gone := errors.New("session gone")
		go func() { time.Sleep(30 * time.Millisecond); cancel(gone) }()
		start := time.Now()
		if _, err := r.WriteAt([]byte("zz"), 10); !errors.Is(err, gone) {
			t.Fatalf("err = %v, want %v", err, gone)
		}
		if d := time.Since(start); d != 30*time.Millisecond {
			t.Fatalf("the write ended %v after it began, want when the session ended (30ms)", d)
		}

		r = newReorderWriter(t.Context(), &slowBuffer{}, 4, time.Minute, testMem(t))
		cause := errors.New("transfer error")
		go func() { time.Sleep(30 * time.Millisecond); r.Abort(cause) }()
		if _, err := r.WriteAt([]byte("zz"), 10); !errors.Is(err, cause) {
			t.Fatalf("err = %v, want %v", err, cause)
		}
	})
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
		// Every third file spans several window blocks, with larger writes.
		size, maxChunk := rng.IntN(64<<10), 4096
		if iter%3 == 0 {
			size, maxChunk = rng.IntN(3*blockBytes), 40<<10
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		var chunks []op
		for off := 0; off < size; {
			n := 1 + rng.IntN(maxChunk)
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
		if iter%3 == 0 {
			window = int64(blockBytes/2 + rng.IntN(2*blockBytes))
		}
		mem := testMem(t)
		r := newReorderWriter(t.Context(), sink, window, 5*time.Second, mem)
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
		if n := mem.Reserved(); n != 0 {
			t.Fatalf("seed %d: %d bytes of transfer memory still reserved after Close", seed, n)
		}
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

// Out-of-order data takes transfer memory only while windows hold less than windowShare of the
// budget; a write that finds none waits like one beyond the window, and proceeds once the gap
// fills, or fails with a busy error when it does not in time.
func TestReorderWaitsForMemory(t *testing.T) {
	mem, err := transfermem.New(transfermem.Config{Limit: 2 << 20}) // windows get 1 MiB: 3 blocks
	if err != nil {
		t.Fatal(err)
	}
	sink := &slowBuffer{}
	r := newReorderWriter(t.Context(), sink, 16<<20, 5*time.Second, mem)
	data := make([]byte, 4*blockBytes+10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	// One byte in each of blocks 1, 2 and 3: three blocks, all the memory windows may have.
	for _, off := range []int64{blockBytes, 2 * blockBytes, 3 * blockBytes} {
		if _, err := r.WriteAt(data[off:off+1], off); err != nil {
			t.Fatal(err)
		}
	}
	if got := mem.Reserved(); got != 3*blockCost {
		t.Fatalf("reserved %d, want 3 blocks (%d)", got, 3*blockCost)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.WriteAt(data[4*blockBytes:], 4*blockBytes) // block 4: no memory left
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("write without memory returned early: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	// Everything else in order: the gap fills, the blocks drain and the waiting write goes in.
	if _, err := r.WriteAt(data[:blockBytes], 0); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{blockBytes + 1, 2*blockBytes + 1, 3*blockBytes + 1} {
		if _, err := r.WriteAt(data[off:off+blockBytes-1], off); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write waiting for memory not released after the gap filled")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.bytes(), data) {
		t.Fatal("stored bytes differ")
	}
	if mem.Reserved() != 0 {
		t.Fatalf("%d bytes still reserved", mem.Reserved())
	}

	// The gap never fills: the write fails as busy, and so does the upload.
	r = newReorderWriter(t.Context(), &slowBuffer{}, 16<<20, 200*time.Millisecond, mem)
	for _, off := range []int64{blockBytes, 2 * blockBytes, 3 * blockBytes} {
		if _, err := r.WriteAt([]byte{1}, off); err != nil {
			t.Fatal(err)
		}
	}
	_, err = r.WriteAt([]byte{1}, 4*blockBytes)
	if !errors.Is(err, errNoMemory) || !errors.Is(err, storage.ErrBusy) {
		t.Fatalf("write without memory: %v, want errNoMemory (storage.ErrBusy)", err)
	}
	if err := r.Close(); !errors.Is(err, errNoMemory) {
		t.Fatalf("close: %v", err)
	}
	if mem.Reserved() != 0 {
		t.Fatalf("%d bytes still reserved after a failed upload", mem.Reserved())
	}
}

// A block a flush drained part-way is freed once in-order writes pass it, not kept until Close:
// an upload holds window memory only for data it actually buffers.
func TestReorderFreesDrainedBlocks(t *testing.T) {
	mem := testMem(t)
	r := newReorderWriter(t.Context(), &slowBuffer{}, 16<<20, time.Second, mem)
	ahead := make([]byte, 1000)
	for i := range 50 {
		base := int64(i) * (2 * blockBytes / 3) // some blocks are drained twice, some passed by direct writes
		if _, err := r.WriteAt(ahead, base+1000); err != nil {
			t.Fatal(err)
		}
		if _, err := r.WriteAt(make([]byte, 1000), base); err != nil { // flushes to base+2000
			t.Fatal(err)
		}
		if _, err := r.WriteAt(make([]byte, 2*blockBytes/3-2000), base+2000); err != nil {
			t.Fatal(err)
		}
		if got := mem.Reserved(); got > blockCost {
			t.Fatalf("step %d: %d bytes reserved with nothing buffered, want at most one block", i, got)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if mem.Reserved() != 0 {
		t.Fatalf("%d bytes reserved after Close", mem.Reserved())
	}
}

func TestReorderConflictAcrossBlocks(t *testing.T) {
	mem := testMem(t)
	r := newReorderWriter(t.Context(), &slowBuffer{}, 16<<20, time.Second, mem)
	a := bytes.Repeat([]byte{'a'}, 1000)
	if _, err := r.WriteAt(a, blockBytes-500); err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(a)
	b[900] = 'b' // in the second block
	if _, err := r.WriteAt(b, blockBytes-500); !errors.Is(err, errConflict) {
		t.Fatalf("conflicting rewrite across a block boundary: %v", err)
	}
	r.Abort(nil)
	if mem.Reserved() != 0 {
		t.Fatalf("%d bytes still reserved after Abort", mem.Reserved())
	}
}

// discard counts what it is given.
type discard struct{ n int64 }

func (d *discard) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }

// threadCPU is the CPU time the calling thread has used.
func threadCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Writes at descending offsets once cost O(buffered chunks) each (a sorted slice insert), so
// 60,000 one-byte writes took 45 CPU-seconds. Now each costs O(1): 100,000 of them must cost at
// most a few times what the same writes in order cost. Both runs are measured in CPU time of
// this goroutine's locked thread, the best of three, so a busy machine does not skew them; the
// adversarial run stops early (and fails) once it is clearly over the bound.
func TestReorderAdversarialWritesCostLinear(t *testing.T) {
	const n = 100_000
	const bound = 4.0
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	one := []byte{'x'}
	run := func(descending bool, limit time.Duration) (time.Duration, bool) {
		sink := &discard{}
		r := newReorderWriter(t.Context(), sink, 16<<20, time.Minute, testMem(t))
		start := threadCPU(t)
		for i := range n {
			off := int64(i)
			if descending {
				off = n - 1 - int64(i) // offset 0 last: everything before it is buffered
			}
			if _, err := r.WriteAt(one, off); err != nil {
				t.Fatal(err)
			}
			if limit > 0 && i%1000 == 999 && threadCPU(t)-start > limit {
				return threadCPU(t) - start, false
			}
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		took := threadCPU(t) - start
		if sink.n != n {
			t.Fatalf("stored %d bytes, want %d", sink.n, n)
		}
		return took, true
	}
	best := func(descending bool, limit time.Duration) (time.Duration, bool) {
		var min time.Duration
		for i := range 3 {
			d, ok := run(descending, limit)
			if !ok {
				return d, false
			}
			if i == 0 || d < min {
				min = d
			}
		}
		return min, true
	}
	inOrder, _ := best(false, 0)
	inOrder = max(inOrder, time.Millisecond) // the thread clock ticks in µs; keep the bound meaningful
	limit := time.Duration(bound * float64(inOrder))
	adversarial, ok := best(true, 2*limit)
	t.Logf("%d one-byte writes: in order %v, descending %v CPU (%.2fx)", n, inOrder, adversarial,
		float64(adversarial)/float64(inOrder))
	if !ok || adversarial > limit {
		t.Fatalf("descending writes cost %v CPU, more than %.0fx the %v of in-order writes", adversarial, bound, inOrder)
	}
}
