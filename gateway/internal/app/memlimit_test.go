package app

import (
	"runtime"
	"testing"
)

// The limit is the transfer memory plus room for the rest of the Go memory: it follows transfer
// memory exactly (the budget reports it), so buffers many transfers legitimately hold never
// push the GC into collecting back to back; it counts the memory that is not heap objects
// (stacks, metadata), which the runtime's limit counts too; and it keeps half the floor above
// the other live heap (or as much as that heap, when larger), so sessions do not make the GC run
// more often per byte either.
func TestMemoryLimiterAddsTransferMemory(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		name                     string
		live, transfer, overhead int64
		changed                  int64 // a transferChanged report instead of an adjust, when > 0
		want                     int64
	}{
		{name: "idle: the floor", live: 8 * MiB, overhead: 6 * MiB, want: 32 * MiB},
		{name: "one upload: its buffers on top", live: 30 * MiB, transfer: 22 * MiB, overhead: 6 * MiB, want: 54 * MiB},
		{name: "fifty uploads: room stays half the floor", live: 264 * MiB, transfer: 256 * MiB, overhead: 10 * MiB, want: 290 * MiB},
		{name: "budget reports between GCs", changed: 100 * MiB, want: 134 * MiB},
		{name: "some sessions: their heap plus half the floor", live: 260 * MiB, transfer: 240 * MiB, overhead: 10 * MiB, want: 290 * MiB},
		{name: "many sessions: twice their heap", live: 340 * MiB, transfer: 240 * MiB, overhead: 20 * MiB, want: 460 * MiB},
		{name: "a pipeline burst: stacks and metadata counted", live: 14 * MiB, transfer: 3 * MiB, overhead: 15 * MiB, want: 45 * MiB},
		{name: "back to idle", live: 8 * MiB, overhead: 6 * MiB, want: 32 * MiB},
	}
	var live, transfer, overhead int64
	var sets []int64
	m := &memoryLimiter{floor: 32 * MiB, live: func() int64 { return live }, transfer: func() int64 { return transfer },
		nonHeap: func() int64 { return overhead },
		set:     func(v int64) int64 { sets = append(sets, v); return 0 }}
	for _, tt := range tests {
		if tt.changed > 0 {
			m.transferChanged(tt.changed)
		} else {
			live, transfer, overhead = tt.live, tt.transfer, tt.overhead
			m.adjust()
		}
		if m.cur != tt.want {
			t.Errorf("%s: limit %d MiB, want %d MiB", tt.name, m.cur/MiB, tt.want/MiB)
		}
	}
	m.adjust() // unchanged: not set again
	if len(sets) != len(tests) {
		t.Errorf("SetMemoryLimit called %d times (%v), want %d", len(sets), sets, len(tests))
	}
	runtime.GC() // live heap is measured by a GC
	if l := liveHeap(); l <= 0 {
		t.Errorf("liveHeap() = %d, want the runtime's live heap", l)
	}
	if o := nonHeapMemory(); o <= 0 {
		t.Errorf("nonHeapMemory() = %d, want the runtime's stacks and metadata", o)
	}
}
