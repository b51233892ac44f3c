package event

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sequencer hands out detail.object.sequencer values for an emulator. S3 documents the
// sequencer as a hexadecimal string that orders the events of one key: right-pad the shorter
// of two values with zeros, then compare as strings (see CompareSequencers). Values from one
// Sequencer strictly increase, across all keys, so they also order events per key.
//
// Each value is 16 lower-case hex digits: Unix seconds, then nanoseconds, which is the shape of
// the values S3 itself sends ("617f08299329d189" starts with 0x617f0829, a 2021 timestamp) and
// keeps them increasing across restarts as long as the clock does not go back; Resume covers
// that case.
type Sequencer struct {
	mu   sync.Mutex
	last uint64
	now  func() time.Time
}

// NewSequencer returns a Sequencer driven by the wall clock.
func NewSequencer() *Sequencer { return &Sequencer{now: time.Now} }

// Next returns a value greater than every value returned before and every value given to Resume.
func (s *Sequencer) Next() string {
	t := s.now()
	v := uint64(t.Unix())<<32 | uint64(t.Nanosecond())
	s.mu.Lock()
	if v <= s.last {
		v = s.last + 1
	}
	s.last = v
	s.mu.Unlock()
	return fmt.Sprintf("%016x", v)
}

// Resume makes later values sort after seq, for an emulator restarting from its event log.
func (s *Sequencer) Resume(seq string) error {
	if !isHex(seq) {
		return fmt.Errorf("resume sequencer: %q is not hexadecimal", seq)
	}
	p := strings.ToLower(seq)
	if len(p) < 16 {
		p += strings.Repeat("0", 16-len(p))
	}
	// A longer value is covered by its first 16 digits: anything greater than those sorts after it.
	v, err := strconv.ParseUint(p[:16], 16, 64)
	if err != nil {
		return fmt.Errorf("resume sequencer: %w", err)
	}
	s.mu.Lock()
	if v > s.last {
		s.last = v
	}
	s.mu.Unlock()
	return nil
}

// CompareSequencers orders two sequencer values of the same key the way S3 documents: the
// shorter is right-padded with zeros, then they are compared as strings (hex digits compared
// without regard to case). It returns -1, 0 or +1. Sequencers of different keys are unordered.
func CompareSequencers(a, b string) int {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if n := len(b) - len(a); n > 0 {
		a += strings.Repeat("0", n)
	} else if n < 0 {
		b += strings.Repeat("0", -n)
	}
	return strings.Compare(a, b)
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
