package transfermem

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const MiB = 1 << 20

func newBudget(t *testing.T, limit int64, wait time.Duration) *Budget {
	t.Helper()
	b, err := New(Config{Limit: limit, Wait: wait})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []Config{{Limit: -1}, {Wait: -time.Second}, {Limit: 1000}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	b, err := New(Config{})
	if err != nil || b.Limit() != DefaultLimit {
		t.Fatalf("New(zero) = %v, %v", b, err)
	}
}

// A reservation that does not fit waits for memory to come back, and gets it in arrival order.
func TestReserveWaitsAndIsServedInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, 8*MiB, time.Minute)
		first, err := b.Reserve(t.Context(), 6*MiB)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var order []string
		start := func(name string, n int64) {
			go func() {
				l, err := b.Reserve(t.Context(), n)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				time.Sleep(time.Second)
				l.Release()
			}()
		}
		start("big", 6*MiB) // arrives first, does not fit
		synctest.Wait()
		start("small", MiB) // fits beside the first holder, but must not overtake the big one
		synctest.Wait()
		if len(order) != 0 {
			t.Fatalf("served before memory came back: %v", order)
		}
		first.Release()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(order) != 2 {
			t.Fatalf("served %v, want both", order)
		}
		if b.Reserved() != 0 || b.Waits() != 2 || b.Refusals() != 0 {
			t.Fatalf("reserved %d waits %d refusals %d", b.Reserved(), b.Waits(), b.Refusals())
		}
	})
}

func TestReserveGivesUpAfterWaitOrCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, 4*MiB, 30*time.Second)
		hold, _ := b.Reserve(t.Context(), 4*MiB)
		start := time.Now()
		_, err := b.Reserve(t.Context(), MiB)
		if !errors.Is(err, ErrExhausted) || time.Since(start) != 30*time.Second {
			t.Fatalf("err %v after %s, want ErrExhausted after 30s", err, time.Since(start))
		}
		ctx, cancel := context.WithCancelCause(t.Context())
		cause := errors.New("client gone")
		time.AfterFunc(time.Second, func() { cancel(cause) })
		if _, err := b.Reserve(ctx, MiB); !errors.Is(err, cause) {
			t.Fatalf("cancelled reserve: %v", err)
		}
		if _, err := b.Reserve(t.Context(), 5*MiB); !errors.Is(err, ErrExhausted) {
			t.Fatalf("more than the limit: %v", err)
		}
		hold.Release()
		if b.Reserved() != 0 || b.Refusals() != 2 {
			t.Fatalf("reserved %d refusals %d, want 0 and 2", b.Reserved(), b.Refusals())
		}
		// The queue is empty again: a reservation that fits is immediate.
		l, err := b.Reserve(t.Context(), 4*MiB)
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
	})
}

// One user's share caps what they hold while others still get memory.
func TestShareCapsOneUser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, 16*MiB, 10*time.Second)
		b.SetShare(4 * MiB)
		alice, bob := b.Share("alice"), b.Share("bob")
		if b.Share("alice") != alice {
			t.Fatal("Share is not stable per key")
		}
		var held []*Lease
		for range 4 {
			l, err := alice.Reserve(t.Context(), MiB)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, l)
		}
		if _, err := alice.Reserve(t.Context(), MiB); !errors.Is(err, ErrExhausted) {
			t.Fatalf("alice beyond her share: %v", err)
		}
		l, err := bob.Reserve(t.Context(), 4*MiB)
		if err != nil {
			t.Fatalf("bob blocked by alice: %v", err)
		}
		if b.Reserved() != 8*MiB || alice.Reserved() != 4*MiB {
			t.Fatalf("reserved total %d alice %d", b.Reserved(), alice.Reserved())
		}
		l.Release()
		for _, l := range held {
			l.Release()
		}
		if b.Reserved() != 0 || alice.Reserved() != 0 || bob.Reserved() != 0 {
			t.Fatal("reservations not returned to every level")
		}
	})
}

func TestTryReserveStaysUnderFraction(t *testing.T) {
	b := newBudget(t, 8*MiB, time.Second)
	a := b.TryReserve(3*MiB, 0.5)
	if a == nil {
		t.Fatal("3 of 8 MiB refused under half")
	}
	if b.TryReserve(2*MiB, 0.5) != nil {
		t.Fatal("5 of 8 MiB granted under half")
	}
	if !a.TryGrow(MiB, 0.5) {
		t.Fatal("4 of 8 MiB refused under half")
	}
	a.Release()
	if b.Reserved() != 0 {
		t.Fatalf("reserved %d", b.Reserved())
	}
}

// Blocks are pooled: a second upload reuses the first's blocks, the memory held never exceeds
// the limit, and Trim gives unused blocks back.
func TestBlocksArePooledAndBounded(t *testing.T) {
	b := newBudget(t, 2*MiB, time.Second)
	l, err := b.Reserve(t.Context(), 2*MiB)
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]byte
	for range 2 * MiB / BlockSize {
		blocks = append(blocks, l.Block())
	}
	if b.Allocated() != 2*MiB || l.Room() != 0 {
		t.Fatalf("allocated %d room %d", b.Allocated(), l.Room())
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a block beyond the reservation was handed out")
			}
		}()
		l.Block()
	}()
	first := &blocks[0][0]
	for _, blk := range blocks {
		l.Put(blk)
	}
	l.Release()
	l2, _ := b.Reserve(t.Context(), BlockSize)
	if got := l2.Block(); &got[0] != first && b.Allocated() != 2*MiB {
		t.Fatal("a new block was made while pooled ones were free")
	}
	// Memory the caller allocates itself pushes pooled blocks out, within the limit.
	l3, _ := b.Reserve(t.Context(), MiB)
	p := l3.Alloc(MiB)
	if b.Allocated() > b.Limit() {
		t.Fatalf("allocated %d over the limit %d", b.Allocated(), b.Limit())
	}
	l3.Free(p)
	l3.Release()
	l2.Release() // its block counts as dropped
	b.Trim()     // first Trim only starts measuring
	b.Trim()
	if b.Allocated() != 0 {
		t.Fatalf("allocated %d after trimming an idle budget", b.Allocated())
	}
}

func TestOnChangeFollowsAllocated(t *testing.T) {
	var mu sync.Mutex
	var seen []int64
	b, err := New(Config{Limit: 8 * MiB, OnChange: func(a int64) {
		mu.Lock()
		seen = append(seen, a)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := b.Reserve(t.Context(), 4*MiB)
	var blocks [][]byte
	for range 8 {
		blocks = append(blocks, l.Block())
	}
	for _, blk := range blocks {
		l.Drop(blk)
	}
	l.Release()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 4 || seen[0] != 1*MiB || seen[1] != 2*MiB || seen[2] != 1*MiB || seen[3] != 0 {
		t.Fatalf("OnChange saw %v, want every MiB step: [1MiB 2MiB 1MiB 0]", seen)
	}
}
