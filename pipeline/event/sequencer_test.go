package event

import (
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestCompareSequencers(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"617f08299329d189", "617f0837b476e463", -1},
		{"617f0837b476e463", "617f08299329d189", 1},
		{"617f08299329d189", "617f08299329d189", 0},
		{"617f08299329d189", "617F08299329D189", 0},
		// Right-padding: a shorter value is compared as if it ended in zeros.
		{"617f0829", "617f08290000", 0},
		{"617f0829", "617f08290001", -1},
		{"617f083", "617f08299329d189", 1},
		{"0069a55b0f1c2d3e4f", "0069a55b0f1c2d3e", 1},
		{"0069a55b0f1c2d3e00", "0069a55b0f1c2d3e", 0},
	}
	for _, tt := range tests {
		if got := CompareSequencers(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareSequencers(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestSequencerIncreases(t *testing.T) {
	frozen := time.Date(2026, 3, 2, 9, 0, 0, 5, time.UTC)
	s := &Sequencer{now: func() time.Time { return frozen }}
	first := s.Next()
	if first != "69a5519000000005" {
		t.Errorf("first = %q: want Unix seconds then nanoseconds in hex", first)
	}
	prev := first
	for range 5 { // the clock stands still: values must still increase
		v := s.Next()
		if CompareSequencers(prev, v) >= 0 {
			t.Fatalf("%q not after %q", v, prev)
		}
		prev = v
	}
	frozen = frozen.Add(-time.Hour) // the clock goes back
	if v := s.Next(); CompareSequencers(prev, v) >= 0 {
		t.Fatalf("after a clock step back: %q not after %q", v, prev)
	}
}

func TestSequencerResume(t *testing.T) {
	s := NewSequencer()
	future := "ffff000000000000aa" // longer than ours and far in the future
	if err := s.Resume(future); err != nil {
		t.Fatal(err)
	}
	if v := s.Next(); CompareSequencers(future, v) >= 0 {
		t.Errorf("%q not after resumed %q", v, future)
	}
	if err := s.Resume("not hex"); err == nil {
		t.Error("Resume accepted a non-hex value")
	}
	if err := s.Resume("01"); err != nil { // older than what we have: no effect
		t.Fatal(err)
	}
}

func TestSequencerConcurrent(t *testing.T) {
	s := NewSequencer()
	const workers, each = 8, 200
	out := make(chan string, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				out <- s.Next()
			}
		})
	}
	wg.Wait()
	close(out)
	re := regexp.MustCompile(`^[0-9a-f]{16}$`)
	var all []string
	seen := map[string]bool{}
	for v := range out {
		if !re.MatchString(v) || seen[v] {
			t.Fatalf("bad or repeated value %q", v)
		}
		seen[v] = true
		all = append(all, v)
	}
	sort.Slice(all, func(i, j int) bool { return CompareSequencers(all[i], all[j]) < 0 })
	if len(all) != workers*each {
		t.Fatalf("%d values", len(all))
	}
}
