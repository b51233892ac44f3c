package logbuf

import (
	"strings"
	"sync"
	"testing"
)

func TestBuffer(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 800) {
		t.Errorf("%d bytes, want 800", len(got))
	}

	capped := Buffer{Max: 4}
	for _, s := range []string{"ab", "cde", "fg"} {
		if n, err := capped.Write([]byte(s)); n != len(s) || err != nil {
			t.Errorf("write %q = %d, %v", s, n, err)
		}
	}
	if got := capped.String(); got != "abcde" {
		t.Errorf("capped = %q, want the writes up to the one that passed Max", got)
	}
}
