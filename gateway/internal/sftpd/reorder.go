package sftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// Reassembly errors. They make the upload fail as a whole: once a write is refused the object
// could not be what the client meant, so Close must not commit it.
var (
	errRewrite     = errors.New("write below data already stored: resume and rewrite are not supported")
	errConflict    = errors.New("overlapping write with different data")
	errGapTimeout  = errors.New("timed out waiting for missing data before a write")
	errGapAtClose  = errors.New("file closed with missing data")
	errWriterClose = errors.New("write after close")
)

// reorderWriter turns the out-of-order WriteAt calls an SFTP server sees into the sequential
// stream a storage upload needs.
//
// pkg/sftp hands write packets to several workers, so WriteAt calls for one handle run
// concurrently and in any order, although clients (OpenSSH, pkg/sftp) send them in increasing
// offset order. Data received ahead of the lowest missing offset is buffered, as long as it lies
// within [written, written+window); a write further ahead waits (which holds back its worker
// and, through the client's in-flight limit, the client) until the stream catches up, or fails
// after timeout without progress.
//
// Why this cannot deadlock: let next be the lowest offset not yet received. A write starting at
// next never waits (it is always accepted), and whichever goroutine finds data at next with no
// flush in progress becomes the flusher and drains every contiguous chunk before it returns; a
// goroutine that buffers a chunk at next while a flush is in progress leaves it to that flusher,
// which re-checks for contiguous data under the lock before it stops. So the byte at next is
// either missing (no call holds it) or is being moved to storage. Waiting writes hold pkg/sftp
// workers, but pkg/sftp dispatches packets to workers in arrival order and clients send in
// increasing offset order, so the packet carrying next arrived before any write that waits on
// it and already has a worker. Only a client that sends more than window bytes out of order
// (and fills every worker with such writes) can stall, and it gets errGapTimeout, not a hang.
// Waits also end when ctx is cancelled (session gone, upload aborted).
type reorderWriter struct {
	w       io.Writer
	window  int64
	timeout time.Duration // fail a waiting write after this long without progress
	ctx     context.Context

	mu       sync.Mutex
	changed  chan struct{} // closed (and replaced) whenever next, written, flushing or err change
	next     int64         // every byte below next was received; it is stored or being stored
	written  int64         // bytes the storage writer accepted
	chunks   []chunk       // received beyond next, sorted by offset, non-overlapping
	flushing bool          // a goroutine is writing to w without the lock
	err      error         // sticky: the first failure
	closed   bool
}

type chunk struct {
	off  int64
	data []byte
}

func (c chunk) end() int64 { return c.off + int64(len(c.data)) }

func newReorderWriter(ctx context.Context, w io.Writer, window int64, timeout time.Duration) *reorderWriter {
	return &reorderWriter{w: w, window: window, timeout: timeout, ctx: ctx, changed: make(chan struct{})}
}

// signalLocked wakes every waiter.
func (r *reorderWriter) signalLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// failLocked records the first error and wakes waiters.
func (r *reorderWriter) failLocked(err error) error {
	if r.err == nil {
		r.err = err
	}
	r.signalLocked()
	return r.err
}

// WriteAt implements io.WriterAt. It does not retain p.
func (r *reorderWriter) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("write at offset %d: negative offset", off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := off + int64(len(p))

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.waitForRoomLocked(off, end); err != nil {
		return 0, err
	}
	if off == r.next && !r.flushing && (len(r.chunks) == 0 || r.chunks[0].off >= end) {
		// In order with nothing to merge (the common case): store p itself, no copy.
		if err := r.writeDirectLocked(p, end); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if err := r.insertLocked(p, off, end); err != nil {
		return 0, err
	}
	if r.flushing || len(r.chunks) == 0 || r.chunks[0].off != r.next {
		// Either ahead of the gap, or the running flusher will pick it up.
		return len(p), nil
	}
	if err := r.flushLocked(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// waitForRoomLocked blocks while [off, end) is beyond the window and does not start at next.
func (r *reorderWriter) waitForRoomLocked(off, end int64) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	lastNext, lastWritten := r.next, r.written
	deadline := time.Now().Add(r.timeout)
	for {
		switch {
		case r.err != nil:
			return r.err
		case r.closed:
			return errWriterClose
		case off < r.next:
			return r.failLocked(fmt.Errorf("write at offset %d (%d bytes stored): %w", off, r.next, errRewrite))
		case off == r.next || end <= r.written+r.window:
			return nil
		}
		if r.next != lastNext || r.written != lastWritten {
			lastNext, lastWritten = r.next, r.written
			deadline = time.Now().Add(r.timeout)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return r.failLocked(fmt.Errorf("write at offset %d, %d bytes stored: %w", off, r.next, errGapTimeout))
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
		case <-r.ctx.Done():
		}
		r.mu.Lock()
		if r.err == nil && r.ctx.Err() != nil {
			r.failLocked(context.Cause(r.ctx))
		}
	}
}

// insertLocked buffers a copy of p at off. Bytes already buffered must match (a duplicate
// write is harmless); a difference is a conflict.
func (r *reorderWriter) insertLocked(p []byte, off, end int64) error {
	// First chunk that ends after off.
	i := sort.Search(len(r.chunks), func(i int) bool { return r.chunks[i].end() > off })
	var pieces []chunk
	pos := off
	j := i
	for ; j < len(r.chunks) && r.chunks[j].off < end; j++ {
		c := r.chunks[j]
		lo, hi := max(off, c.off), min(end, c.end())
		if string(p[lo-off:hi-off]) != string(c.data[lo-c.off:hi-c.off]) {
			return r.failLocked(fmt.Errorf("write at offset %d+%d overlaps data at %d+%d: %w", off, len(p), c.off, len(c.data), errConflict))
		}
		if c.off > pos {
			pieces = append(pieces, chunk{off: pos, data: clone(p[pos-off : c.off-off])})
		}
		pos = max(pos, c.end())
	}
	if pos < end {
		pieces = append(pieces, chunk{off: pos, data: clone(p[pos-off:])})
	}
	if len(pieces) == 0 {
		return nil
	}
	// The new pieces fit in the holes between chunks[i-1] and chunks[j], interleaved with
	// chunks[i:j]; merge the two sorted runs.
	merged := make([]chunk, 0, j-i+len(pieces))
	a, b := r.chunks[i:j], pieces
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && a[0].off < b[0].off) {
			merged, a = append(merged, a[0]), a[1:]
		} else {
			merged, b = append(merged, b[0]), b[1:]
		}
	}
	r.chunks = append(r.chunks[:i], append(merged, r.chunks[j:]...)...)
	return nil
}

// writeDirectLocked stores p, which starts at next, without buffering it, then flushes any
// chunks it made contiguous. It holds the flusher role meanwhile, as flushLocked does.
func (r *reorderWriter) writeDirectLocked(p []byte, end int64) error {
	r.flushing = true
	r.next = end
	r.signalLocked()
	r.mu.Unlock()
	m, err := r.w.Write(p)
	if err == nil && m != len(p) {
		err = io.ErrShortWrite
	}
	r.mu.Lock()
	r.written += int64(m)
	if err != nil {
		r.flushing = false
		return r.failLocked(fmt.Errorf("store at offset %d: %w", r.written, err))
	}
	return r.flushLocked() // clears flushing
}

// chunkPool recycles the copies of out-of-order writes; most are one SFTP write (32 KiB from
// OpenSSH and pkg/sftp), so the window makes no garbage per packet.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkPoolSize); return &b }}

const chunkPoolSize = 32 << 10

func clone(b []byte) []byte {
	// Only writes of at least half a pooled buffer use one, so buffered memory stays within
	// twice the data however small the writes.
	if len(b) > chunkPoolSize || len(b) < chunkPoolSize/2 {
		return append([]byte(nil), b...)
	}
	c := (*chunkPool.Get().(*[]byte))[:len(b)]
	copy(c, b)
	return c
}

// release returns a clone's buffer to the pool once nothing refers to it.
func release(b []byte) {
	if cap(b) == chunkPoolSize {
		b = b[:chunkPoolSize]
		chunkPool.Put(&b)
	}
}

// flushLocked writes every chunk contiguous with next to w, releasing the lock while writing so
// other writes can be buffered meanwhile. Only one flusher runs at a time; before it stops it
// checks (under the lock) for chunks that became contiguous while it was writing.
func (r *reorderWriter) flushLocked() error {
	r.flushing = true
	defer func() {
		r.flushing = false
		r.signalLocked()
	}()
	for r.err == nil && len(r.chunks) > 0 && r.chunks[0].off == r.next {
		var batch []chunk
		for len(r.chunks) > 0 && r.chunks[0].off == r.next {
			batch = append(batch, r.chunks[0])
			r.next = r.chunks[0].end()
			r.chunks[0] = chunk{}
			r.chunks = r.chunks[1:]
		}
		r.signalLocked()
		r.mu.Unlock()
		var n int64
		var err error
		for _, c := range batch {
			var m int
			m, err = r.w.Write(c.data)
			release(c.data)
			n += int64(m)
			if err == nil && m != len(c.data) {
				err = io.ErrShortWrite
			}
			if err != nil {
				break
			}
		}
		r.mu.Lock()
		r.written += n
		if err != nil {
			return r.failLocked(fmt.Errorf("store at offset %d: %w", r.written, err))
		}
	}
	return r.err
}

// Close ends the stream: it fails if any write failed or data is missing before the highest
// offset written. The caller commits or aborts the upload accordingly.
func (r *reorderWriter) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// pkg/sftp waits for every WriteAt before Close, so no flush is running; wait anyway.
	for r.flushing {
		ch := r.changed
		r.mu.Unlock()
		<-ch
		r.mu.Lock()
	}
	r.closed = true
	if r.err != nil {
		return r.err
	}
	if len(r.chunks) > 0 {
		c := r.chunks[len(r.chunks)-1]
		return r.failLocked(fmt.Errorf("%w: bytes %d-%d missing, %d received after them", errGapAtClose, r.next, r.chunks[0].off, c.end()-r.chunks[0].off))
	}
	return nil
}

// Abort fails the stream with cause (waking waiting writes) and drops buffered data.
func (r *reorderWriter) Abort(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cause == nil {
		cause = errors.New("upload aborted")
	}
	r.closed = true
	r.chunks = nil
	r.failLocked(cause)
}

// Size reports the bytes received contiguously from offset 0.
func (r *reorderWriter) Size() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// waitIdle blocks until no flush is running (Abort uses it before touching the storage upload).
func (r *reorderWriter) waitIdle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.flushing {
		ch := r.changed
		r.mu.Unlock()
		<-ch
		r.mu.Lock()
	}
}
