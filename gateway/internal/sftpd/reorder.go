package sftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
)

// Reassembly errors. They make the upload fail as a whole: once a write is refused the object
// could not be what the client meant, so Close must not commit it.
var (
	errRewrite     = errors.New("write below data already stored: resume and rewrite are not supported")
	errConflict    = errors.New("overlapping write with different data")
	errGapTimeout  = errors.New("timed out waiting for missing data before a write")
	errGapAtClose  = errors.New("file closed with missing data")
	errWriterClose = errors.New("write after close")
	// errNoMemory wraps storage.ErrBusy: a write ahead of the gap found no transfer memory to
	// wait in and the gap was not filled in time.
	errNoMemory = fmt.Errorf("%w: no transfer memory for writes ahead of missing data", storage.ErrBusy)
)

const (
	// windowShare is the part of the transfer memory that reorder windows together may hold, so
	// part buffers (which every upload needs to make progress) always find the rest.
	windowShare = 0.5
	// blockBytes is the span of one window block; blockCost is what it holds in the budget
	// (the data and the bitmap of received bytes).
	blockBytes = transfermem.BlockSize
	blockWords = blockBytes / 64
	blockCost  = blockBytes + blockWords*8
)

// reorderWriter turns the out-of-order WriteAt calls an SFTP server sees into the sequential
// stream a storage upload needs.
//
// pkg/sftp hands write packets to several workers, so WriteAt calls for one handle run
// concurrently and in any order, although clients (OpenSSH, pkg/sftp) send them in increasing
// offset order. A write at the lowest missing offset (next) goes straight to storage. Data
// received ahead of next is buffered, as long as it lies within [written, written+window) and
// the transfer memory has room for it: a write further ahead, or one that finds no memory,
// waits (which holds back its worker and, through the client's in-flight limit, the client)
// until this upload moves on (it may then be buffered or, once at next, written), or fails after
// timeout without progress. Memory freed by other uploads does not wake it: it never needs it
// to make progress, and a few hundred waiting writes polling for memory cost whole CPUs.
//
// Buffered data lives in blocks of transfermem.BlockSize bytes indexed by offset/BlockSize, each
// with a bitmap of the bytes received, so a write costs O(1) plus O(its length), whatever the
// order of earlier writes (a sorted list of chunks cost O(chunks) per out-of-order write, which
// writes at descending offsets made quadratic). Memory is at most window/BlockSize+2 blocks per
// upload, and windows together hold at most windowShare of the budget.
//
// Why this cannot deadlock: a write starting at next needs no window memory: with no flush in
// progress it is written straight away, and while a flush is in progress it is buffered or
// waits for that flush to end, then is written. Whichever goroutine finds data at next with no
// flush in progress becomes the flusher and drains every contiguous byte before it returns,
// re-checking under the lock before it stops, so the byte at next is either missing (no call
// holds it), being moved to storage, or held by a write that will move it. A storage write may
// wait for part memory, which the parts in flight give back whatever clients do (package
// s3store), and windows can never take that memory (windowShare). Waiting writes hold pkg/sftp
// workers, but pkg/sftp dispatches packets to workers in arrival order and clients send in
// increasing offset order, so the packet carrying next arrived before any write that waits on
// it and already has a worker. Only a client that sends more than the window (or the memory it
// can get) out of order, filling every worker with such writes, can stall, and it gets
// errGapTimeout or errNoMemory, not a hang. Waits also end when ctx is cancelled (session gone,
// upload aborted).
type reorderWriter struct {
	w       io.Writer
	window  int64
	timeout time.Duration // fail a waiting write after this long without progress
	ctx     context.Context
	mem     *transfermem.Budget // the user's share of the transfer memory

	mu       sync.Mutex
	changed  chan struct{} // closed (and replaced) whenever next, written, flushing or err change
	next     int64         // every byte below next was received; it is stored or being stored
	written  int64         // bytes the storage writer accepted
	blocks   map[int64]*block
	lease    *transfermem.Lease // the blocks' memory; nil while none is held
	ahead    int64              // bytes buffered
	maxEnd   int64              // end of the highest byte buffered (for the error at Close)
	flushing bool               // a goroutine is writing to w without the lock
	err      error              // sticky: the first failure
	closed   bool
}

// block holds received bytes of [index*blockBytes, (index+1)*blockBytes).
type block struct {
	data []byte  // a transfermem block
	have *bitmap // bit i set: data[i] was received
}

type bitmap [blockWords]uint64

var bitmapPool = sync.Pool{New: func() any { return new(bitmap) }}

func newReorderWriter(ctx context.Context, w io.Writer, window int64, timeout time.Duration, mem *transfermem.Budget) *reorderWriter {
	return &reorderWriter{w: w, window: window, timeout: timeout, ctx: ctx, mem: mem,
		changed: make(chan struct{}), blocks: map[int64]*block{}}
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
			return 0, r.err
		case r.closed:
			return 0, errWriterClose
		case off < r.next:
			return 0, r.failLocked(fmt.Errorf("write at offset %d (%d bytes stored): %w", off, r.next, errRewrite))
		}
		noMemory := false
		switch {
		case off == r.next && !r.flushing:
			// In order (the common case): store p itself, no copy.
			if err := r.writeDirectLocked(p, off, end); err != nil {
				return 0, err
			}
			return len(p), nil
		case off == r.next || end <= r.written+r.window:
			ok, err := r.bufferLocked(p, off, end)
			if err != nil {
				return 0, err
			}
			if ok {
				if !r.flushing && r.readyLocked() {
					if err := r.flushLocked(); err != nil {
						return 0, err
					}
				}
				return len(p), nil
			}
			noMemory = true
		}
		// Wait: beyond the window, or no memory to buffer in. Either way the write only has to
		// wait for this upload to move on, not for memory freed elsewhere: once the gap before
		// it fills it is written straight to storage, needing no window memory (see above).
		if r.next != lastNext || r.written != lastWritten {
			lastNext, lastWritten = r.next, r.written
			deadline = time.Now().Add(r.timeout)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			err := errGapTimeout
			if noMemory {
				err = errNoMemory
			}
			return 0, r.failLocked(fmt.Errorf("write at offset %d, %d bytes stored: %w", off, r.next, err))
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

// readyLocked reports whether buffered data starts at next.
func (r *reorderWriter) readyLocked() bool {
	b := r.blocks[r.next/blockBytes]
	return b != nil && b.have.isSet(int(r.next%blockBytes))
}

// checkLocked fails with errConflict if bytes of [off, end) already buffered differ from p.
func (r *reorderWriter) checkLocked(p []byte, off, end int64) error {
	if r.ahead == 0 {
		return nil
	}
	for idx := off / blockBytes; idx*blockBytes < end; idx++ {
		b := r.blocks[idx]
		if b == nil {
			continue
		}
		base := idx * blockBytes
		lo, hi := max(off, base), min(end, base+blockBytes)
		if at, ok := b.differs(p[lo-off:hi-off], int(lo-base)); !ok {
			return r.failLocked(fmt.Errorf("write at offset %d+%d differs at %d from data received before: %w", off, len(p), lo+int64(at), errConflict))
		}
	}
	return nil
}

// bufferLocked copies p into the window. It returns false, changing nothing, when the blocks
// it needs cannot be had from the transfer memory right now.
func (r *reorderWriter) bufferLocked(p []byte, off, end int64) (bool, error) {
	if err := r.checkLocked(p, off, end); err != nil {
		return false, err
	}
	first, last := off/blockBytes, (end-1)/blockBytes
	need := int64(0)
	for idx := first; idx <= last; idx++ {
		if r.blocks[idx] == nil {
			need++
		}
	}
	if need > 0 {
		if r.lease == nil {
			if r.lease = r.mem.TryReserve(need*blockCost, windowShare); r.lease == nil {
				return false, nil
			}
		} else if !r.lease.TryGrow(need*blockCost, windowShare) {
			return false, nil
		}
	}
	for idx := first; idx <= last; idx++ {
		b := r.blocks[idx]
		if b == nil {
			b = &block{data: r.lease.Block(), have: bitmapPool.Get().(*bitmap)}
			r.blocks[idx] = b
		}
		base := idx * blockBytes
		lo, hi := max(off, base), min(end, base+blockBytes)
		copy(b.data[lo-base:hi-base], p[lo-off:hi-off])
		r.ahead += int64(b.have.set(int(lo-base), int(hi-base)))
	}
	r.maxEnd = max(r.maxEnd, end)
	return true, nil
}

// freeLocked gives a block's memory back.
func (r *reorderWriter) freeLocked(idx int64) {
	b := r.blocks[idx]
	if b == nil {
		return
	}
	delete(r.blocks, idx)
	r.ahead -= int64(b.have.count())
	*b.have = bitmap{}
	bitmapPool.Put(b.have)
	r.lease.Put(b.data)
	r.lease.Shrink(blockCost)
}

// freeAllLocked drops every buffered byte (not while a flush reads them).
func (r *reorderWriter) freeAllLocked() {
	for idx := range r.blocks {
		r.freeLocked(idx)
	}
	if r.lease != nil {
		r.lease.Release()
		r.lease = nil
	}
}

// writeDirectLocked stores p, which starts at next, without buffering it, then flushes any
// data it made contiguous. It holds the flusher role meanwhile, as flushLocked does. Bytes of p
// received before (a duplicate write) must match; their blocks are dropped.
func (r *reorderWriter) writeDirectLocked(p []byte, off, end int64) error {
	if err := r.checkLocked(p, off, end); err != nil {
		return err
	}
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
	if len(r.blocks) > 0 {
		// Blocks wholly below next hold only bytes already stored (p's duplicates, or none:
		// a block a flush left part-way through).
		for idx := off / blockBytes; idx < end/blockBytes; idx++ {
			r.freeLocked(idx)
		}
		if b := r.blocks[end/blockBytes]; b != nil {
			r.ahead -= int64(b.have.clear(0, int(end%blockBytes)))
		}
	}
	if err != nil {
		r.flushing = false
		r.afterFlushLocked()
		return r.failLocked(fmt.Errorf("store at offset %d: %w", r.written, err))
	}
	return r.flushLocked() // clears flushing
}

// flushLocked writes every byte contiguous with next to w, releasing the lock while writing so
// other writes can be buffered meanwhile. Only one flusher runs at a time; before it stops it
// checks (under the lock) for data that became contiguous while it was writing.
func (r *reorderWriter) flushLocked() error {
	r.flushing = true
	defer func() {
		r.flushing = false
		r.afterFlushLocked()
		r.signalLocked()
	}()
	for r.err == nil {
		idx := r.next / blockBytes
		b := r.blocks[idx]
		if b == nil {
			break
		}
		i := int(r.next % blockBytes)
		j := b.have.runEnd(i)
		if j == i {
			break
		}
		r.next = idx*blockBytes + int64(j)
		r.signalLocked()
		r.mu.Unlock()
		data := b.data[i:j]
		m, err := r.w.Write(data)
		if err == nil && m != len(data) {
			err = io.ErrShortWrite
		}
		r.mu.Lock()
		r.written += int64(m)
		if r.closed { // aborted meanwhile: afterFlushLocked drops everything
			break
		}
		if j == blockBytes {
			r.freeLocked(idx)
		} else {
			r.ahead -= int64(b.have.clear(i, j))
		}
		if err != nil {
			return r.failLocked(fmt.Errorf("store at offset %d: %w", r.written, err))
		}
	}
	return r.err
}

// afterFlushLocked drops the buffered data of an aborted writer once no flush reads it.
func (r *reorderWriter) afterFlushLocked() {
	if r.closed && r.err != nil {
		r.freeAllLocked()
	}
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
	defer r.freeAllLocked()
	if r.err != nil {
		return r.err
	}
	if r.ahead > 0 {
		return r.failLocked(fmt.Errorf("%w: bytes from %d missing, %d received after them up to %d", errGapAtClose, r.next, r.ahead, r.maxEnd))
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
	r.failLocked(cause)
	if !r.flushing {
		r.freeAllLocked()
	}
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

// differs compares p with the received bytes of the block from i on. It returns the offset
// (from i) of the first received byte that differs, and false; or true when none does.
func (b *block) differs(p []byte, i int) (int, bool) {
	for k := i; k < i+len(p); {
		w := b.have[k/64] >> (k % 64)
		if w == 0 {
			k += 64 - k%64
			continue
		}
		k += bits.TrailingZeros64(w)
		if k >= i+len(p) {
			break
		}
		if b.data[k] != p[k-i] {
			return k - i, false
		}
		k++
	}
	return 0, true
}

// wordMask returns the bits of word w that lie in [lo, hi).
func wordMask(w, lo, hi int) uint64 {
	start, end := max(lo-w*64, 0), min(hi-w*64, 64)
	if end-start == 64 {
		return ^uint64(0)
	}
	return (uint64(1)<<(end-start) - 1) << start
}

// set marks [lo, hi) received and returns how many bits were not set before.
func (m *bitmap) set(lo, hi int) int {
	n := 0
	for w := lo / 64; w*64 < hi; w++ {
		mask := wordMask(w, lo, hi)
		n += bits.OnesCount64(mask &^ m[w])
		m[w] |= mask
	}
	return n
}

// clear unmarks [lo, hi) and returns how many bits were set.
func (m *bitmap) clear(lo, hi int) int {
	n := 0
	for w := lo / 64; w*64 < hi; w++ {
		mask := wordMask(w, lo, hi)
		n += bits.OnesCount64(mask & m[w])
		m[w] &^= mask
	}
	return n
}

func (m *bitmap) isSet(i int) bool { return m[i/64]&(1<<(i%64)) != 0 }

func (m *bitmap) count() int {
	n := 0
	for _, w := range m {
		n += bits.OnesCount64(w)
	}
	return n
}

// runEnd returns the first index at or after i that is not set (blockBytes if none).
func (m *bitmap) runEnd(i int) int {
	w := i / 64
	if x := ^m[w] >> (i % 64); x != 0 {
		return i + bits.TrailingZeros64(x)
	}
	for w++; w < blockWords; w++ {
		if x := ^m[w]; x != 0 {
			return w*64 + bits.TrailingZeros64(x)
		}
	}
	return blockBytes
}
