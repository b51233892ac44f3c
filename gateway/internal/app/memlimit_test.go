package app

import (
	"runtime"
	"testing"
)

func TestMemoryLimiterFollowsLiveHeap(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		live, want int64
	}{
		{0, 56 * MiB},          // idle: the floor
		{40 * MiB, 56 * MiB},   // one upload's buffers fit under it
		{400 * MiB, 450 * MiB}, // ten uploads: live + 1/8, so the GC is not pinned at the limit
		{10 * MiB, 56 * MiB},   // back down when they end
	}
	var live int64
	var sets []int64
	m := &memoryLimiter{floor: 56 * MiB, live: func() int64 { return live },
		set: func(v int64) int64 { sets = append(sets, v); return 0 }}
	for _, tt := range tests {
		live = tt.live
		m.adjust()
		if m.cur != tt.want {
			t.Errorf("live %d MiB: limit %d MiB, want %d MiB", tt.live/MiB, m.cur/MiB, tt.want/MiB)
		}
	}
	if len(sets) != 3 { // unchanged limits are not set again
		t.Errorf("SetMemoryLimit called with %v, want 3 calls", sets)
	}
	runtime.GC() // live heap is measured by a GC
	if l := liveHeap(); l <= 0 {
		t.Errorf("liveHeap() = %d, want the runtime's live heap", l)
	}
}
