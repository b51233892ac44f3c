// Package logbuf provides Buffer, a goroutine-safe byte buffer: tests hand it to loggers and
// child processes as their output and read it while they still write.
package logbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes from any goroutine. The zero value is ready to use.
type Buffer struct {
	// Max, when above 0, keeps only the first Max bytes (later writes are dropped but reported
	// as written), so a runaway writer cannot eat memory.
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Max > 0 && b.buf.Len() > b.Max {
		return len(p), nil
	}
	return b.buf.Write(p)
}

// String returns everything kept so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
