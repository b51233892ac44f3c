package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ferrygw/ferry/pipeline/notify"
)

// outboxTail follows the embedded default's outbox (one JSON line per notification, what SNS
// would be sent) and records, for each input key a notice names, when the first notice naming
// it appeared and how many did.
type outboxTail struct {
	path string
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu    sync.Mutex
	first map[string]time.Time
	count map[string]int
	lines int
	bad   []string // lines that are not a notice with files
}

func tailOutbox(path string) *outboxTail {
	t := &outboxTail{path: path, stop: make(chan struct{}), done: make(chan struct{}),
		first: map[string]time.Time{}, count: map[string]int{}}
	go t.run()
	return t
}

// Close stops following (after one last read) and waits for the reader. Once it returns, the
// fields may be read without the lock.
func (t *outboxTail) Close() {
	t.once.Do(func() { close(t.stop) })
	<-t.done
}

// notified is how many distinct keys have a notice so far.
func (t *outboxTail) notified() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.first)
}

func (t *outboxTail) run() {
	defer close(t.done)
	var off int64
	var partial []byte
	for {
		stopping := false
		select {
		case <-t.stop:
			stopping = true
		default:
		}
		if f, err := os.Open(t.path); err == nil {
			if _, err := f.Seek(off, io.SeekStart); err == nil {
				r := bufio.NewReaderSize(f, 64<<10)
				for {
					line, err := r.ReadBytes('\n')
					off += int64(len(line))
					if err != nil {
						partial = append(partial, line...)
						break
					}
					t.record(append(partial, line...), time.Now())
					partial = nil
				}
			}
			f.Close()
		}
		if stopping {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (t *outboxTail) record(line []byte, now time.Time) {
	keys, err := noticeKeys(line)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines++
	if err != nil {
		t.bad = append(t.bad, fmt.Sprintf("%v: %s", err, line))
		return
	}
	for _, k := range keys {
		if _, ok := t.first[k]; !ok {
			t.first[k] = now
		}
		t.count[k]++
	}
}

// noticeKeys returns the input keys an outbox line's notice names: its JSON (the message
// machine subscribers get, "default" of the per-protocol message) lists the files.
func noticeKeys(line []byte) ([]string, error) {
	var e notify.OutboxEntry
	if err := json.Unmarshal(line, &e); err != nil {
		return nil, err
	}
	var msgs map[string]string
	if err := json.Unmarshal([]byte(e.Message), &msgs); err != nil {
		return nil, fmt.Errorf("message is not per-protocol JSON: %w", err)
	}
	var n notify.Notice
	if err := json.Unmarshal([]byte(msgs[notify.ProtocolDefault]), &n); err != nil {
		return nil, fmt.Errorf("default message is not a notice: %w", err)
	}
	if len(n.Files) == 0 {
		return nil, errors.New("notice names no files")
	}
	keys := make([]string, 0, len(n.Files))
	for _, f := range n.Files {
		keys = append(keys, f.Key)
	}
	return keys, nil
}
