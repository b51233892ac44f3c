package app

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// memoryLimitEvery is how often the soft memory limit is re-fitted to live memory.
const memoryLimitEvery = 500 * time.Millisecond

// memoryLimiter keeps the runtime's soft memory limit at max(floor, live + live/8), where live
// is the heap the last GC kept. The floor keeps an idle or one-transfer gateway small (without
// a limit Go lets the heap reach twice the live data, and returns freed memory slowly); following
// live memory keeps many concurrent transfers, whose buffers need more, from pinning the GC at
// the limit, where it would collect back to back and take up to half the CPU.
type memoryLimiter struct {
	floor int64
	live  func() int64      // live heap bytes
	set   func(int64) int64 // debug.SetMemoryLimit
	cur   int64
}

func (m *memoryLimiter) adjust() {
	want := max(m.floor, m.live()*9/8)
	if want != m.cur {
		m.set(want)
		m.cur = want
	}
}

// startMemoryLimit applies limit (bytes; 0 = none) until ctx ends, then restores Go's default.
// A GOMEMLIMIT in the environment wins.
func startMemoryLimit(ctx context.Context, limit int64, logger *slog.Logger) {
	if limit <= 0 {
		return
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		logger.Info("memory_limit ignored: GOMEMLIMIT is set", "GOMEMLIMIT", v)
		return
	}
	m := &memoryLimiter{floor: limit, live: liveHeap, set: debug.SetMemoryLimit}
	m.adjust()
	go func() {
		t := time.NewTicker(memoryLimitEvery)
		defer t.Stop()
		defer debug.SetMemoryLimit(math.MaxInt64)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.adjust()
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
