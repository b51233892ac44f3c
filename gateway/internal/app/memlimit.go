package app

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/transfermem"
)

const (
	// memoryLimitEvery is how often the soft memory limit is re-fitted to the live heap.
	memoryLimitEvery = 500 * time.Millisecond
	// trimEvery is how often pooled transfer memory that no transfer needed is given back.
	trimEvery = 5 * time.Second
)

// memoryLimiter keeps the runtime's soft memory limit at
//
//	transfer + max(floor, other + max(floor*3/4, other))
//
// where transfer is the transfer memory allocated now (pooled part blocks, windows, rings; the
// budget bounds it and reports every MiB it moves) and other is the rest of the live heap as of
// the last GC (SSH and SFTP buffers of the sessions, goroutines' data, caches). The GC's room
// for garbage is at least 3/4 of the floor, and as large as the other live heap once sessions
// hold more (as GOGC=100 would give them): a collection's cost grows with the sessions (their
// stacks and buffers are scanned), so the room must grow with them for the GC to cost the same
// per byte moved at 50 transfers as at one. Transfer buffers are pooled and live, not garbage:
// collecting more often would free nothing. A limit that ignores transfer memory (or follows
// the live heap with a small margin) pins the GC at the limit as soon as buffers fill it, and
// it collects back to back.
type memoryLimiter struct {
	floor    int64
	live     func() int64      // live heap bytes
	transfer func() int64      // transfer memory allocated
	set      func(int64) int64 // debug.SetMemoryLimit

	mu    sync.Mutex
	other int64 // live heap besides transfer memory, at the last adjust
	cur   int64
}

// adjust re-reads the live heap and sets the limit.
func (m *memoryLimiter) adjust() {
	t := m.transfer()
	other := max(m.live()-t, 0)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.other = other
	m.setLocked(t)
}

// transferChanged follows the transfer memory between adjusts (transfermem's OnChange).
func (m *memoryLimiter) transferChanged(allocated int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setLocked(allocated)
}

func (m *memoryLimiter) setLocked(transfer int64) {
	want := transfer + max(m.floor, m.other+max(m.floor*3/4, m.other))
	if want != m.cur {
		m.set(want)
		m.cur = want
	}
}

// newMemoryLimiter returns the limiter for limit (bytes; 0 = none), or nil when there is none
// to apply. A GOMEMLIMIT in the environment wins.
func newMemoryLimiter(limit int64, logger *slog.Logger) *memoryLimiter {
	if limit <= 0 {
		return nil
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		logger.Info("memory_limit ignored: GOMEMLIMIT is set", "GOMEMLIMIT", v)
		return nil
	}
	return &memoryLimiter{floor: limit, live: liveHeap, set: debug.SetMemoryLimit}
}

// onChange is what the transfer memory budget calls when its allocation moves (nil for none).
func (m *memoryLimiter) onChange() func(int64) {
	if m == nil {
		return nil
	}
	return m.transferChanged
}

// runMemory applies m (when there is one) until ctx ends, then restores Go's default, and
// meanwhile gives back pooled transfer memory that no transfer needed.
func runMemory(ctx context.Context, m *memoryLimiter, mem *transfermem.Budget) {
	if m != nil {
		m.transfer = mem.Allocated
		m.adjust()
	}
	go func() {
		t := time.NewTicker(memoryLimitEvery)
		defer t.Stop()
		if m != nil {
			defer debug.SetMemoryLimit(math.MaxInt64)
		}
		lastTrim := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if m != nil {
					m.adjust()
				}
				if time.Since(lastTrim) >= trimEvery {
					mem.Trim()
					lastTrim = time.Now()
				}
			}
		}
	}()
}

func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}
