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
//	transfer + max(floor, overhead + other + max(floor/2, other))
//
// where transfer is the transfer memory allocated now (pooled part blocks, windows, rings; the
// budget bounds it and reports every MiB it moves), other is the rest of the live heap as of the
// last GC (SSH and SFTP buffers of the sessions, goroutines' data, caches, the embedded
// pipeline's work) and overhead is the Go memory that is not heap objects (goroutine stacks, GC
// metadata, free space in spans), which the runtime's limit counts too. The GC's room for
// garbage is at least half the floor, and as large as the other live heap once sessions hold
// more (as GOGC=100 would give them): a collection's cost grows with the live heap (its stacks
// and buffers are scanned), so the room must grow with it for the GC to cost the same per byte
// moved at 50 transfers as at one. Transfer buffers are pooled and live, not garbage:
// collecting more often would free nothing. A limit that ignores transfer memory or the
// overhead pins the GC at the limit as soon as they fill it, and it collects back to back (an
// embedded-default burst of 5,000 files ran 120 collections a second with 3 MiB of room, and
// spent a third of its CPU in the GC).
type memoryLimiter struct {
	floor    int64
	live     func() int64      // live heap bytes
	nonHeap  func() int64      // Go memory besides heap objects
	transfer func() int64      // transfer memory allocated
	set      func(int64) int64 // debug.SetMemoryLimit

	mu       sync.Mutex
	other    int64 // live heap besides transfer memory, at the last adjust
	overhead int64 // nonHeap at the last adjust
	cur      int64
}

// adjust re-reads the live heap and sets the limit.
func (m *memoryLimiter) adjust() {
	t := m.transfer()
	other := max(m.live()-t, 0)
	overhead := m.nonHeap()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.other, m.overhead = other, overhead
	m.setLocked(t)
}

// transferChanged follows the transfer memory between adjusts (transfermem's OnChange).
func (m *memoryLimiter) transferChanged(allocated int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setLocked(allocated)
}

func (m *memoryLimiter) setLocked(transfer int64) {
	want := transfer + max(m.floor, m.overhead+m.other+max(m.floor/2, m.other))
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
	return &memoryLimiter{floor: limit, live: liveHeap, nonHeap: nonHeapMemory, set: debug.SetMemoryLimit}
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

// nonHeapMemory is the Go memory the runtime's limit counts that is not heap objects: stacks,
// GC and runtime metadata, free space in heap spans not yet returned to the OS.
func nonHeapMemory() int64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	metrics.Read(s)
	for _, v := range s {
		if v.Value.Kind() != metrics.KindUint64 {
			return 0
		}
	}
	total, released, objects := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	if total < released+objects {
		return 0
	}
	return int64(total - released - objects)
}
