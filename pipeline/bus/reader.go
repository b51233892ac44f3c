package bus

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// LogReader reads the event log in order, across segments, from any process: it returns only
// complete lines, so it can tail a log another process is writing. Segments removed by
// compaction before the reader reaches them are skipped (the reader moves to the oldest kept).
type LogReader struct {
	dir  string
	next uint64 // seq of the next line to return

	f    *os.File
	r    *bufio.Reader
	base uint64 // base of the open segment
	part []byte // a line read without its newline yet
}

// NewLogReader returns a reader positioned at sequence number from (1 = the beginning).
func NewLogReader(dir string, from uint64) *LogReader {
	if from == 0 {
		from = 1
	}
	return &LogReader{dir: dir, next: from}
}

// Next returns the next event and its sequence number, or io.EOF when no complete line follows
// yet (call again later to tail).
func (lr *LogReader) Next() (uint64, []byte, error) {
	for {
		if lr.f == nil {
			if err := lr.open(); err != nil {
				return 0, nil, err
			}
		}
		line, err := lr.r.ReadBytes('\n')
		if err == nil {
			if len(lr.part) > 0 {
				line = append(lr.part, line...)
				lr.part = nil
			}
			seq := lr.next
			lr.next++
			return seq, line[:len(line)-1], nil
		}
		if !errors.Is(err, io.EOF) {
			return 0, nil, fmt.Errorf("read event log: %w", err)
		}
		lr.part = append(lr.part, line...)
		// End of this segment for now: move on only if the writer has started the next one
		// exactly where we are (it rotates at batch boundaries, never mid-line).
		if _, serr := os.Stat(filepath.Join(lr.dir, segName(lr.next))); serr == nil && lr.next != lr.base {
			lr.closeFile()
			continue
		}
		return 0, nil, io.EOF
	}
}

// open opens the segment holding lr.next and skips to it.
func (lr *LogReader) open() error {
	bases, err := listSegments(lr.dir)
	if err != nil {
		return err
	}
	if len(bases) == 0 {
		return io.EOF
	}
	base := bases[0]
	if lr.next < base {
		lr.next = base // compacted away
	}
	for _, b := range bases {
		if b <= lr.next {
			base = b
		}
	}
	f, err := os.Open(filepath.Join(lr.dir, segName(base)))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return io.EOF // compacted between list and open; retry later
		}
		return fmt.Errorf("open event log: %w", err)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	for s := base; s < lr.next; s++ {
		if _, err := r.ReadSlice('\n'); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				s-- // the line goes on; keep skipping it
				continue
			}
			f.Close()
			if errors.Is(err, io.EOF) {
				return io.EOF // not written yet: position unknown, retry later
			}
			return fmt.Errorf("read event log: %w", err)
		}
	}
	lr.f, lr.r, lr.base, lr.part = f, r, base, nil
	return nil
}

func (lr *LogReader) closeFile() {
	if lr.f != nil {
		lr.f.Close()
	}
	lr.f, lr.r, lr.part = nil, nil, nil
}

// Close releases the open segment.
func (lr *LogReader) Close() error {
	lr.closeFile()
	return nil
}

// Follow writes every event in dir's log to fn, from the beginning (or the oldest kept
// segment), then, if follow is set, keeps polling for new events until ctx ends.
func Follow(ctx context.Context, dir string, follow bool, poll time.Duration, fn func(seq uint64, event []byte) error) error {
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	lr := NewLogReader(dir, 1)
	defer lr.Close()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		seq, line, err := lr.Next()
		if err == nil {
			if err := fn(seq, line); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
