package bus

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The event log is a directory of JSON-lines segments named seg-<first seq, 20 digits>.jsonl.
// Line n (from 0) of a segment is the event with sequence number base+n; sequence numbers start
// at 1 and never repeat. Each line is one compact JSON event, exactly what targets receive, so
// `ferry events` (and `cat`) can print the log as it is.
const (
	segPrefix = "seg-"
	segSuffix = ".jsonl"
)

func segName(base uint64) string { return fmt.Sprintf("%s%020d%s", segPrefix, base, segSuffix) }

// listSegments returns the bases of the segments in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list event log %s: %w", dir, err)
	}
	var bases []uint64
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, segPrefix) || !strings.HasSuffix(n, segSuffix) {
			continue
		}
		b, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, segPrefix), segSuffix), 10, 64)
		if err != nil || b == 0 {
			continue
		}
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

// batch is one group of Puts committed by a single write+fsync.
type batch struct {
	buf   []byte
	first uint64 // seq of the first event in buf
	n     uint64
	done  chan struct{}
	err   error
}

// logWriter appends events with group commit: Puts that arrive while a write+fsync is in
// progress are gathered into the next batch and share its fsync.
type logWriter struct {
	dir      string
	maxBytes int64

	mu      sync.Mutex
	next    uint64 // next seq to assign
	pending *batch // gathering, not yet handed to the flusher
	failed  error  // sticky: after a failed write the log's tail is uncertain
	closed  bool
	kick    chan struct{}

	// flusher-owned
	f    *os.File
	base uint64
	size int64

	committed func(last uint64) // called after each durable batch, in order
	stopped   chan struct{}
}

// openLog recovers the log in dir: a torn last line (a crash mid-write, never acknowledged to
// a Put) is cut off, and numbering continues after the last complete line.
func openLog(dir string, maxBytes int64, committed func(uint64)) (*logWriter, uint64, error) {
	bases, err := listSegments(dir)
	if err != nil {
		return nil, 0, err
	}
	w := &logWriter{dir: dir, maxBytes: maxBytes, kick: make(chan struct{}, 1), committed: committed, stopped: make(chan struct{})}
	if len(bases) == 0 {
		w.base = 1
		f, err := createSegment(dir, 1)
		if err != nil {
			return nil, 0, err
		}
		w.f = f
		w.next = 1
	} else {
		w.base = bases[len(bases)-1]
		path := filepath.Join(dir, segName(w.base))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("open event log: %w", err)
		}
		data, err := io.ReadAll(f)
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("read event log %s: %w", path, err)
		}
		keep := bytes.LastIndexByte(data, '\n') + 1
		if keep != len(data) {
			if err := f.Truncate(int64(keep)); err != nil {
				f.Close()
				return nil, 0, fmt.Errorf("cut torn line in %s: %w", path, err)
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return nil, 0, fmt.Errorf("sync %s: %w", path, err)
			}
		}
		if _, err := f.Seek(int64(keep), io.SeekStart); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("seek %s: %w", path, err)
		}
		w.f = f
		w.size = int64(keep)
		w.next = w.base + uint64(bytes.Count(data[:keep], []byte{'\n'}))
	}
	go w.flushLoop()
	return w, w.next - 1, nil
}

func createSegment(dir string, base uint64) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, segName(base)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create event log segment: %w", err)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// append queues lines (each without its newline) and returns the batch to wait on.
func (w *logWriter) append(lines [][]byte) (*batch, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	if w.failed != nil {
		return nil, w.failed
	}
	if w.pending == nil {
		w.pending = &batch{first: w.next, done: make(chan struct{})}
	}
	b := w.pending
	for _, l := range lines {
		b.buf = append(b.buf, l...)
		b.buf = append(b.buf, '\n')
	}
	b.n += uint64(len(lines))
	w.next += uint64(len(lines))
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return b, nil
}

func (w *logWriter) flushLoop() {
	defer close(w.stopped)
	for {
		_, ok := <-w.kick
		for {
			w.mu.Lock()
			b := w.pending
			w.pending = nil
			w.mu.Unlock()
			if b == nil {
				break
			}
			b.err = w.write(b)
			if b.err != nil {
				w.mu.Lock()
				w.failed = fmt.Errorf("event log failed earlier: %w", b.err)
				w.mu.Unlock()
			} else {
				w.committed(b.first + b.n - 1)
			}
			close(b.done)
		}
		if !ok {
			w.f.Close()
			return
		}
	}
}

func (w *logWriter) write(b *batch) error {
	if w.size > 0 && w.size+int64(len(b.buf)) > w.maxBytes {
		f, err := createSegment(w.dir, b.first)
		if err != nil {
			return err
		}
		if err := w.f.Close(); err != nil {
			f.Close()
			return fmt.Errorf("close event log segment: %w", err)
		}
		w.f, w.size = f, 0
		w.mu.Lock()
		w.base = b.first
		w.mu.Unlock()
	}
	if _, err := w.f.Write(b.buf); err != nil {
		return fmt.Errorf("write event log: %w", err)
	}
	w.size += int64(len(b.buf))
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("sync event log: %w", err)
	}
	return nil
}

// close stops accepting events, waits for queued ones to be written, and closes the file.
func (w *logWriter) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.stopped
		return
	}
	w.closed = true
	w.mu.Unlock()
	close(w.kick) // safe: appends check closed under mu before sending
	<-w.stopped
}

// activeBase is the first seq of the segment being written.
func (w *logWriter) activeBase() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.base
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// writeFileAtomic writes data to path via a synced temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}
