package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ferrygw/ferry/pipeline/event"
)

// The inbox (dir/inbox/) is how another process puts events on a running bus — `ferry redrive`
// while `ferry serve` holds the bus: each file is one event, written atomically by Enqueue. The
// bus puts every file's event on its log (durably, as Put does) and then removes the file, every
// Config.InboxInterval from Open on (so files left while it was stopped are taken once it runs
// again, after its rules are added). A crash between the two puts the event twice at the next
// scan: at least once, like every delivery here.

// DeadLetterFile is a dead-lettered event on disk.
type DeadLetterFile struct {
	Path string
	DeadLetter
}

// DeadLetters lists the dead letters under dir (all rules, or the named ones), oldest first.
func DeadLetters(dir string, rules ...string) ([]DeadLetterFile, error) {
	root := filepath.Join(dir, "dead-letter")
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	var out []DeadLetterFile
	for _, e := range ents {
		if !e.IsDir() || (len(rules) > 0 && !contains(rules, e.Name())) {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("dead letters: %w", err)
		}
		for _, f := range files {
			if f.IsDir() || !strings.HasSuffix(f.Name(), ".json") || strings.HasPrefix(f.Name(), ".") {
				continue
			}
			p := filepath.Join(root, e.Name(), f.Name())
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("dead letter %s: %w", p, err)
			}
			var dl DeadLetter
			if err := json.Unmarshal(data, &dl); err != nil {
				return nil, fmt.Errorf("dead letter %s: %w", p, err)
			}
			out = append(out, DeadLetterFile{Path: p, DeadLetter: dl})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DeadAt.Before(out[j].DeadAt) })
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Enqueue hands events to the bus in dir through its inbox, whether the bus is running or not:
// each becomes a file there, written atomically (a partial file is never read). It returns the
// files' paths.
func Enqueue(dir string, events ...[]byte) ([]string, error) {
	inbox := filepath.Join(dir, "inbox")
	if err := os.MkdirAll(inbox, 0o755); err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	var paths []string
	for _, ev := range events {
		env, err := event.DecodeEnvelope(ev)
		if err != nil {
			return paths, fmt.Errorf("enqueue: %w", err)
		}
		name := fmt.Sprintf("%d-%s.json", time.Now().UnixNano(), safeName(env.ID))
		p := filepath.Join(inbox, name)
		if err := writeFileAtomic(p, ev); err != nil {
			return paths, fmt.Errorf("enqueue: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// Pending counts the events in dir's inbox not yet taken by the bus.
func Pending(dir string) (int, error) {
	names, err := inboxFiles(filepath.Join(dir, "inbox"))
	return len(names), err
}

// Running reports whether a bus has dir open (a process holds its lock).
func Running(dir string) (bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, fmt.Errorf("event bus lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return true, nil
		}
		return false, fmt.Errorf("event bus lock: %w", err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, nil
}

func inboxFiles(inbox string) ([]string, error) {
	ents, err := os.ReadDir(inbox)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // Enqueue's names start with the time: oldest first
	return names, nil
}

// inboxLoop takes the inbox's events every InboxInterval until the bus closes.
func (b *Bus) inboxLoop() {
	defer close(b.inboxDone)
	t := time.NewTicker(b.cfg.InboxInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.takeInbox()
		case <-b.inboxStop:
			return
		}
	}
}

// takeInbox puts each inbox file's event on the log, then removes the file. A file that is not
// an event is renamed *.bad (kept for a person to look at) rather than retried forever.
func (b *Bus) takeInbox() {
	inbox := filepath.Join(b.dir, "inbox")
	names, err := inboxFiles(inbox)
	if err != nil {
		b.log.Error("read inbox", "err", err)
		return
	}
	for _, name := range names {
		p := filepath.Join(inbox, name)
		data, err := os.ReadFile(p)
		if err != nil {
			b.log.Error("read inbox file", "file", p, "err", err)
			continue
		}
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		err = b.PutRaw(ctx, data)
		cancel()
		if errors.Is(err, ErrClosed) {
			return
		}
		if err != nil {
			var syntax *json.SyntaxError
			if _, derr := event.DecodeEnvelope(data); derr != nil || errors.As(err, &syntax) {
				b.log.Error("inbox file is not an event; renamed .bad", "file", p, "err", err)
				_ = os.Rename(p, p+".bad")
				continue
			}
			b.log.Error("put inbox event; retried at the next scan", "file", p, "err", err)
			return
		}
		if err := os.Remove(p); err != nil {
			b.log.Error("remove inbox file; its event may be put again", "file", p, "err", err)
		}
		b.log.Info("event taken from the inbox", "file", name)
	}
}
