package s3store

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
)

// TestReaderRequests checks the reader does not start over for every read: sequential reads,
// slightly out-of-order parallel reads and small steps back are served from one GET.
func TestReaderRequests(t *testing.T) {
	e := newEnv(t, Config{ReadBuffer: 1 << 20})
	data := randBytes(t, 3*testPartSize+999)
	put(t, e.fs, "/f", data)

	t.Run("sequential", func(t *testing.T) {
		e.spy.reset()
		mustEqual(t, "sequential read", get(t, e.fs, "/f"), data)
		if n := e.spy.n("GetObject"); n != 1 {
			t.Errorf("%d GETs for a sequential read, want 1", n)
		}
	})
	t.Run("parallel-out-of-order", func(t *testing.T) {
		// The default ReadBuffer, which covers OpenSSH's window of 64 requests of 32 KiB.
		fsys := newStore(t, e.spy, Config{Bucket: e.srv.Bucket}).Home("", "home")
		r, err := fsys.Open(t.Context(), "/f")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		e.spy.reset()
		// The client keeps up to 64 requests outstanding; 8 workers take them in order and
		// reach ReadAt in any order, as in pkg/sftp's request server.
		const chunk, window = 32 << 10, 64
		got := make([]byte, len(data))
		offsets := make(chan int64)
		outstanding := make(chan struct{}, window)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				buf := make([]byte, chunk)
				for off := range offsets {
					n, err := r.ReadAt(buf, off)
					if err != nil && err != io.EOF {
						t.Error(err)
					}
					copy(got[off:], buf[:n])
					<-outstanding
				}
			})
		}
		for off := int64(0); off < int64(len(data)); off += chunk {
			outstanding <- struct{}{}
			offsets <- off
		}
		close(offsets)
		wg.Wait()
		mustEqual(t, "parallel read", got, data)
		// Usually one GET; a worker descheduled for long (two shared cores, mutex barging)
		// may need the second stream a few times.
		n := e.spy.n("GetObject")
		t.Logf("%d GETs for %d chunks", n, len(data)/chunk)
		if n > 8 {
			t.Errorf("%d GETs for a parallel read of %d chunks, want at most 8", n, len(data)/chunk)
		}
	})
	t.Run("steps", func(t *testing.T) {
		r, err := e.fs.Open(t.Context(), "/f")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		e.spy.reset()
		buf := make([]byte, 1000)
		for _, step := range []struct {
			off  int64
			gets int // total GETs after this read
		}{
			{0, 1},
			{5000, 1},            // a little ahead: skip on the same body
			{100, 1},             // behind, inside the ring
			{900 << 10, 1},       // ahead, within the ring's size
			{3 << 20, 2},         // far ahead: the main stream moves there
			{3<<20 + 500<<10, 2}, // ahead on it
			{3<<20 + 1000, 2},    // behind, in its ring
			{10, 3},              // far behind: a second stream
			{3<<20 + 501<<10, 3}, // the main stream is still where it was
			{20000, 3},           // the second stream goes on too
			{2 << 20, 4},         // far behind the main stream again: the second moves
			{2<<20 + 900<<10, 4}, // and skips ahead
			{3<<20 + 600<<10, 4}, // the main stream skips ahead
			{2<<20 + 1000, 4},    // in the second stream's ring
		} {
			n, err := r.ReadAt(buf, step.off)
			if err != nil || !bytes.Equal(buf[:n], data[step.off:step.off+1000]) {
				t.Fatalf("ReadAt(%d) = %d, %v (equal %v)", step.off, n, err, bytes.Equal(buf[:n], data[step.off:step.off+1000]))
			}
			if got := e.spy.n("GetObject"); got != step.gets {
				t.Errorf("after ReadAt(%d): %d GETs, want %d", step.off, got, step.gets)
			}
		}
	})
}

// TestReaderSeesReplacement checks a file replaced while open fails the read rather than
// mixing two versions.
func TestReaderSeesReplacement(t *testing.T) {
	e := newEnv(t, Config{ReadBuffer: 64 << 10})
	old := randBytes(t, 1<<20)
	put(t, e.fs, "/f", old)
	r, err := e.fs.Open(t.Context(), "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 1000)
	if _, err := r.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	put(t, e.fs, "/f", randBytes(t, 1<<20))
	_, err = r.ReadAt(buf, 900<<10) // far ahead: a new GET, pinned to the old ETag
	if !errors.Is(err, errChanged) {
		t.Errorf("read after replacement: %v, want %v", err, errChanged)
	}
}

// TestReaderRecoversBrokenBody checks a body that ends early is reopened at the right offset.
func TestReaderRecoversBrokenBody(t *testing.T) {
	e := newEnv(t, Config{})
	data := randBytes(t, 2<<20)
	put(t, e.fs, "/f", data)
	r, err := e.fs.Open(t.Context(), "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd := r.(*reader)
	buf := make([]byte, 4096)
	if _, err := rd.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	// Cut the connection under the open body.
	rd.mu.Lock()
	rd.main.body = io.NopCloser(io.LimitReader(rd.main.body, 10))
	rd.mu.Unlock()
	got := make([]byte, len(data)-4096)
	n, err := rd.ReadAt(got, 4096)
	if err != nil || n != len(got) {
		t.Fatalf("ReadAt after a broken body = %d, %v", n, err)
	}
	mustEqual(t, "after reopen", got, data[4096:])
	if rd.gets != 2 {
		t.Errorf("%d GETs, want 2", rd.gets)
	}
}

// A download's read-ahead ring is transfer memory of the user's share: while the share is spent
// the first read waits, then fails as busy; the ring comes back at Close.
func TestReaderRingIsTransferMemory(t *testing.T) {
	mem, err := transfermem.New(transfermem.Config{Limit: 16 << 20, Wait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mem.SetShare(8 << 20)
	e := newEnv(t, Config{ReadBuffer: 4 << 20, Memory: mem})
	data := randBytes(t, 5<<20)
	put(t, e.fs, "/f", data)
	fsys := e.store.UserHome("alice", "", "home")
	hold, err := mem.Share("alice").Reserve(t.Context(), 6<<20)
	if err != nil {
		t.Fatal(err)
	}
	r, err := fsys.Open(t.Context(), "/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, storage.ErrBusy) {
		t.Fatalf("read without memory for the ring: %v, want storage.ErrBusy", err)
	}
	r.Close()
	// Another user's share is untouched.
	mustEqual(t, "bob's download", get(t, e.store.UserHome("bob", "", "home"), "/f"), data)
	hold.Release()
	r, err = fsys.Open(t.Context(), "/f")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "alice's download", got, data)
	if mem.Reserved() == 0 {
		t.Fatal("an open download holds no memory for its ring")
	}
	r.Close()
	if n := mem.Reserved(); n != 0 {
		t.Fatalf("%d bytes reserved after Close", n)
	}
}
