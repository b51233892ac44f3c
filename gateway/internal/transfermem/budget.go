// Package transfermem is the gateway's hard budget for transfer memory: the S3 part buffers of
// uploads, the SFTP reorder windows and the read-ahead rings of downloads, all together, for the
// whole process (config limits.transfer_memory).
//
// Memory is reserved before it is used. A reservation that does not fit waits, first come first
// served, for transfers to give memory back (which holds back that client: back-pressure), and
// fails with ErrExhausted after the configured wait, so one user or many cannot grow the
// process beyond the budget; the transfer that could not get memory fails cleanly instead.
//
// Part buffers and reorder windows are made of pooled blocks of BlockSize bytes: a running
// upload reuses the blocks its finished parts gave back instead of making garbage, so the
// garbage collector has little to do and the process's heap is the budget plus a small,
// stable remainder (see Allocated, which the app adds to the runtime's soft memory limit).
package transfermem

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// BlockSize is the size of the pooled blocks: 1/20 of S3's minimum part, so a part that is
// being filled holds only what it received, rounded up to 256 KiB.
const BlockSize = 256 << 10

// ErrExhausted says a transfer waited for memory longer than the budget's wait and gave up.
var ErrExhausted = errors.New("transfer memory exhausted: the server is busy")

// Defaults for a zero Config.
const (
	DefaultLimit = 256 << 20
	DefaultWait  = 30 * time.Second
)

// Config sizes a Budget.
type Config struct {
	Limit int64         // bytes (default DefaultLimit)
	Wait  time.Duration // how long a reservation may wait for memory (default DefaultWait)
	// OnChange is called (outside any lock) when Allocated has moved by a MiB or more since the
	// last call, so the runtime's soft memory limit can follow it.
	OnChange func(allocated int64)
}

// Budget is the process-wide transfer memory, or one user's share of it (Share). The zero value
// is not usable; call New.
type Budget struct {
	limit    int64
	wait     time.Duration
	onChange func(int64)
	root     *Budget // the process-wide budget: the pool, Allocated and the counters live there
	parent   *Budget // for a share: the budget it is part of

	sharesMu  sync.Mutex
	shares    map[string]*Budget
	shareSize int64

	mu        sync.Mutex
	reserved  int64     // held by leases (allocated or not)
	allocated int64     // bytes made and not yet given to the GC: blocks in use, pooled blocks, Alloc'ed
	free      [][]byte  // pooled blocks
	lowFree   int       // fewest pooled blocks since the last Trim: blocks nobody needed
	queue     []*waiter // reservations waiting, in arrival order
	reported  int64     // allocated at the last onChange

	waits, refusals atomic.Int64
	waitNanos       atomic.Int64
}

type waiter struct {
	n     int64
	ready chan struct{} // closed once n is reserved for it
}

// New returns a budget.
func New(cfg Config) (*Budget, error) {
	if cfg.Limit < 0 || cfg.Wait < 0 {
		return nil, fmt.Errorf("transfermem: negative limit or wait")
	}
	if cfg.Limit == 0 {
		cfg.Limit = DefaultLimit
	}
	if cfg.Limit < 4*BlockSize {
		return nil, fmt.Errorf("transfermem: limit %d is below 1 MiB", cfg.Limit)
	}
	if cfg.Wait == 0 {
		cfg.Wait = DefaultWait
	}
	b := &Budget{limit: cfg.Limit, wait: cfg.Wait, onChange: cfg.OnChange, shareSize: cfg.Limit}
	b.root = b
	return b, nil
}

// SetShare sets the most one key (a user) may hold at once, so one user cannot take the whole
// budget from the others (0 = the whole budget). Call it before Share.
func (b *Budget) SetShare(n int64) {
	b.sharesMu.Lock()
	defer b.sharesMu.Unlock()
	if n <= 0 || n > b.limit {
		n = b.limit
	}
	b.shareSize = n
}

// Share returns key's part of b: reservations through it count against both, so key holds at
// most the share size (SetShare) and everybody together at most b's limit.
func (b *Budget) Share(key string) *Budget {
	b.sharesMu.Lock()
	defer b.sharesMu.Unlock()
	if s := b.shares[key]; s != nil {
		return s
	}
	if b.shares == nil {
		b.shares = map[string]*Budget{}
	}
	s := &Budget{limit: b.shareSize, wait: b.wait, root: b.root, parent: b}
	b.shares[key] = s
	return s
}

// Limit is the budget in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// Reserved is the memory leases hold now.
func (b *Budget) Reserved() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reserved
}

// Allocated is the transfer memory the process holds now (in use or pooled), the same for
// every share; never above the root's limit (blocks dropped while a failed request may still
// read them, see Lease.Drop, are the garbage collector's from then on).
func (b *Budget) Allocated() int64 {
	r := b.root
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.allocated
}

// Waits counts reservations that had to wait; Refusals those that gave up (ErrExhausted);
// WaitSeconds the time spent waiting.
func (b *Budget) Waits() int64         { return b.root.waits.Load() }
func (b *Budget) Refusals() int64      { return b.root.refusals.Load() }
func (b *Budget) WaitSeconds() float64 { return time.Duration(b.root.waitNanos.Load()).Seconds() }
func (b *Budget) report(allocated int64) {
	if b.onChange != nil {
		b.onChange(allocated)
	}
}

// changedLocked returns whether Allocated moved enough since the last report to report it.
func (b *Budget) changedLocked() (int64, bool) {
	d := b.allocated - b.reported
	if d >= 1<<20 || d <= -(1<<20) {
		b.reported = b.allocated
		return b.allocated, true
	}
	return 0, false
}

// unlock releases mu and reports a change of Allocated outside the lock.
func (b *Budget) unlock() {
	a, ok := b.changedLocked()
	b.mu.Unlock()
	if ok {
		b.report(a)
	}
}

// Reserve reserves n bytes, waiting behind earlier reservations for memory to come back. It
// fails with ErrExhausted after the budget's wait, or with ctx's cause.
func (b *Budget) Reserve(ctx context.Context, n int64) (*Lease, error) {
	l := &Lease{b: b}
	if err := l.Grow(ctx, n); err != nil {
		return nil, err
	}
	return l, nil
}

// TryReserve reserves n bytes only if that keeps the reserved memory within frac of the limit
// and nobody is waiting; otherwise it returns nil at once.
func (b *Budget) TryReserve(n int64, frac float64) *Lease {
	l := &Lease{b: b}
	if !l.TryGrow(n, frac) {
		return nil
	}
	return l
}

// grow reserves n more bytes for a lease (see Lease.Grow): in b, then in its parents, all by
// the same deadline.
func (b *Budget) grow(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	deadline := time.Now().Add(b.wait)
	var done []*Budget
	for c := b; c != nil; c = c.parent {
		if err := c.growOne(ctx, n, deadline); err != nil {
			for _, d := range done {
				d.release(n)
			}
			return err
		}
		done = append(done, c)
	}
	return nil
}

// growOne reserves n bytes in b alone, waiting in its queue until deadline.
func (b *Budget) growOne(ctx context.Context, n int64, deadline time.Time) error {
	root := b.root
	if n > b.limit {
		root.refusals.Add(1)
		return fmt.Errorf("reserve %d bytes, more than the %d bytes allowed: %w", n, b.limit, ErrExhausted)
	}
	b.mu.Lock()
	if len(b.queue) == 0 && b.reserved+n <= b.limit {
		b.reserved += n
		b.mu.Unlock()
		return nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	b.queue = append(b.queue, w)
	b.mu.Unlock()
	root.waits.Add(1)
	start := time.Now()
	defer func() { root.waitNanos.Add(int64(time.Since(start))) }()

	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-t.C:
		what := "the transfer memory"
		if b.parent != nil {
			what = "this user's share of the transfer memory"
		}
		err = fmt.Errorf("waited %s for %d bytes of %s (%d of %d reserved): %w",
			b.wait, n, what, b.Reserved(), b.limit, ErrExhausted)
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	b.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		b.reserved -= n
	default:
		for i, q := range b.queue {
			if q == w {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				break
			}
		}
	}
	b.grantLocked()
	b.mu.Unlock()
	if errors.Is(err, ErrExhausted) {
		root.refusals.Add(1)
	}
	return err
}

// tryGrow reserves n bytes in b and its parents if each stays within frac of its limit, with
// nobody waiting.
func (b *Budget) tryGrow(n int64, frac float64) bool {
	if n <= 0 {
		return true
	}
	var done []*Budget
	for c := b; c != nil; c = c.parent {
		if !c.tryGrowOne(n, frac) {
			for _, d := range done {
				d.release(n)
			}
			return false
		}
		done = append(done, c)
	}
	return true
}

func (b *Budget) tryGrowOne(n int64, frac float64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) > 0 || float64(b.reserved+n) > frac*float64(b.limit) {
		return false
	}
	b.reserved += n
	return true
}

// releaseAll gives n reserved bytes back to b and its parents.
func (b *Budget) releaseAll(n int64) {
	for c := b; c != nil; c = c.parent {
		c.release(n)
	}
}

// release gives n reserved bytes back to b alone and wakes the waiters they satisfy.
func (b *Budget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.reserved -= n
	if b.reserved < 0 {
		panic("transfermem: released more than reserved")
	}
	b.grantLocked()
	b.mu.Unlock()
}

// grantLocked reserves memory for waiters in arrival order while the first one fits.
func (b *Budget) grantLocked() {
	for len(b.queue) > 0 && b.reserved+b.queue[0].n <= b.limit {
		w := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		b.reserved += w.n
		close(w.ready)
	}
}

// block returns a pooled block or a new one.
func (b *Budget) block() []byte {
	b.mu.Lock()
	defer b.unlock()
	if k := len(b.free); k > 0 {
		blk := b.free[k-1]
		b.free[k-1] = nil
		b.free = b.free[:k-1]
		b.lowFree = min(b.lowFree, len(b.free))
		return blk
	}
	b.allocated += BlockSize
	return make([]byte, BlockSize)
}

func (b *Budget) putBlock(blk []byte) {
	if cap(blk) != BlockSize {
		panic("transfermem: not a block")
	}
	b.mu.Lock()
	defer b.unlock()
	b.free = append(b.free, blk[:BlockSize])
	b.trimLocked()
}

// forget stops counting n bytes that are no longer the budget's (dropped or freed).
func (b *Budget) forget(n int64) {
	b.mu.Lock()
	defer b.unlock()
	b.allocated -= n
}

// alloc counts n bytes of memory the caller makes itself.
func (b *Budget) alloc(n int64) {
	b.mu.Lock()
	defer b.unlock()
	b.allocated += n
	b.trimLocked()
}

// trimLocked drops pooled blocks while the memory held exceeds the limit (pooled blocks are
// memory nobody reserved; a reservation must be able to allocate).
func (b *Budget) trimLocked() {
	for b.allocated > b.limit && len(b.free) > 0 {
		b.dropFreeLocked()
	}
}

func (b *Budget) dropFreeLocked() {
	k := len(b.free) - 1
	b.free[k] = nil
	b.free = b.free[:k]
	b.allocated -= BlockSize
	b.lowFree = min(b.lowFree, len(b.free))
}

// Trim gives the garbage collector the pooled blocks no transfer needed since the previous
// Trim, so an idle gateway's memory shrinks back. Call it periodically (every few seconds).
func (b *Budget) Trim() {
	b = b.root
	b.mu.Lock()
	defer b.unlock()
	for range b.lowFree {
		b.dropFreeLocked()
	}
	b.lowFree = len(b.free)
}

// Lease is memory reserved from a Budget: blocks and other allocations are taken within it.
// Its methods are safe for concurrent use.
type Lease struct {
	b *Budget

	mu       sync.Mutex
	reserved int64 // bytes this lease holds in the budget
	used     int64 // bytes of it allocated (blocks out, Alloc'ed)
}

// Reserved is the bytes the lease holds.
func (l *Lease) Reserved() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reserved
}

// Room is the reserved bytes not allocated yet.
func (l *Lease) Room() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reserved - l.used
}

// Grow reserves n more bytes, waiting as Budget.Reserve does.
func (l *Lease) Grow(ctx context.Context, n int64) error {
	if err := l.b.grow(ctx, n); err != nil {
		return err
	}
	l.mu.Lock()
	l.reserved += n
	l.mu.Unlock()
	return nil
}

// TryGrow reserves n more bytes as Budget.TryReserve does.
func (l *Lease) TryGrow(n int64, frac float64) bool {
	if !l.b.tryGrow(n, frac) {
		return false
	}
	l.mu.Lock()
	l.reserved += n
	l.mu.Unlock()
	return true
}

// Shrink gives back up to n reserved bytes that are not allocated.
func (l *Lease) Shrink(n int64) {
	l.mu.Lock()
	n = min(n, l.reserved-l.used)
	l.reserved -= n
	l.mu.Unlock()
	l.b.releaseAll(n)
}

// Block returns a block of BlockSize bytes (len BlockSize, contents undefined) within the
// reservation, which must have room for it.
func (l *Lease) Block() []byte {
	l.mu.Lock()
	if l.reserved-l.used < BlockSize {
		l.mu.Unlock()
		panic("transfermem: block beyond the reservation")
	}
	l.used += BlockSize
	l.mu.Unlock()
	return l.b.root.block()
}

// Put returns a block to the pool; its room in the reservation stays the lease's.
func (l *Lease) Put(blk []byte) {
	l.b.root.putBlock(blk)
	l.mu.Lock()
	l.used -= BlockSize
	l.mu.Unlock()
}

// Drop gives a block to the garbage collector instead of the pool, for a block something may
// still read (the body of a request that failed: the HTTP transport can still be sending it).
func (l *Lease) Drop(blk []byte) {
	l.b.root.forget(int64(cap(blk)))
	l.mu.Lock()
	l.used -= BlockSize
	l.mu.Unlock()
}

// Alloc makes n bytes within the reservation, which must have room for them. Give them back
// with Free.
func (l *Lease) Alloc(n int) []byte {
	l.mu.Lock()
	if l.reserved-l.used < int64(n) {
		l.mu.Unlock()
		panic("transfermem: allocation beyond the reservation")
	}
	l.used += int64(n)
	l.mu.Unlock()
	l.b.root.alloc(int64(n))
	return make([]byte, n)
}

// Free stops counting memory from Alloc (the caller drops its last reference).
func (l *Lease) Free(p []byte) {
	if p == nil {
		return
	}
	n := int64(cap(p))
	l.b.root.forget(n)
	l.mu.Lock()
	l.used -= n
	l.mu.Unlock()
}

// Release gives the whole reservation back. Blocks still out are counted as dropped.
func (l *Lease) Release() {
	l.mu.Lock()
	r, used := l.reserved, l.used
	l.reserved, l.used = 0, 0
	l.mu.Unlock()
	if used > 0 {
		l.b.root.forget(used)
	}
	l.b.releaseAll(r)
}
