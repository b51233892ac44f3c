package users

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
)

func userFile(t *testing.T, names ...string) string {
	var b strings.Builder
	b.WriteString("# comment\nusers:\n")
	for _, n := range names {
		b.WriteString("  - name: " + n + "\n    password_hash: \"" + testHash(t, n, cost) + "\"\n    home: " + n + "/\n    permissions: [list]\n")
	}
	return b.String()
}

func startWatch(t *testing.T, content string) (*Store, string, *logbuf.Buffer) {
	t.Helper()
	p := tempPath(t, "users.yaml")
	writeFile(t, p, content)
	logs := &logbuf.Buffer{}
	s, err := Open(p, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.watch(ctx, func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("watch ended: %v", err)
	}
	return s, p, logs
}

func has(s *Store, name string) bool { _, ok := s.Lookup(name); return ok }

func TestWatchInPlaceEdit(t *testing.T) {
	s, p, _ := startWatch(t, userFile(t, "alice"))
	writeFile(t, p, userFile(t, "alice", "bob"))
	testtool.Eventually(t, 10*time.Second, "bob to appear", func() bool { return has(s, "bob") })
}

func TestWatchRenameReplace(t *testing.T) {
	s, p, _ := startWatch(t, userFile(t, "alice"))
	// What editors and config managers do: write a new file beside it and rename it over.
	tmp := filepath.Join(filepath.Dir(p), ".users.yaml.swp")
	writeFile(t, tmp, userFile(t, "carol"))
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 10*time.Second, "carol to replace alice", func() bool { return has(s, "carol") && !has(s, "alice") })
	// The watch survives the replacement: a second edit is seen too.
	writeFile(t, tmp, userFile(t, "dave"))
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 10*time.Second, "dave", func() bool { return has(s, "dave") })
}

func TestWatchBadEditKeepsUsers(t *testing.T) {
	s, p, logs := startWatch(t, userFile(t, "alice"))
	alice, _ := s.Lookup("alice")
	writeFile(t, p, "users:\n  - name: bob\n    home: b/\n    permissions: [list]\n    shell: /bin/sh\n")
	testtool.Eventually(t, 10*time.Second, "the refusal to be logged", func() bool { return strings.Contains(logs.String(), "users file refused") })
	if out := logs.String(); !strings.Contains(out, p+`:5: users[0]: unknown key \"shell\"`) {
		t.Errorf("log does not name file:line: %s", out)
	}
	if got, ok := s.Lookup("alice"); !ok || got != alice || has(s, "bob") {
		t.Error("previous users not kept after a bad edit")
	}
	// Fixing the file applies it.
	writeFile(t, p, userFile(t, "bob"))
	testtool.Eventually(t, 10*time.Second, "bob after the fix", func() bool { return has(s, "bob") && !has(s, "alice") })
	if n := strings.Count(logs.String(), "users file refused"); n != 1 {
		t.Errorf("refusal logged %d times, want once", n)
	}
}

// `ferry user add` on a running server: the atomic rewrite is picked up.
func TestWatchSeesAdminEdit(t *testing.T) {
	s, p, _ := startWatch(t, userFile(t, "alice"))
	if err := Add(context.Background(), LocalFile(p), Entry{Name: "erin", PasswordHash: testHash(t, "e", cost), Home: "e/", Permissions: []string{"list"}}); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 10*time.Second, "erin", func() bool { return has(s, "erin") && has(s, "alice") })
}

// TestDebounce runs the watcher's loop in virtual time: an editor's burst of events (write a
// temporary file, rename it over, touch a backup) is read once, watchDebounce after the burst's
// last event; a watch error makes it look at the file too; nothing is read without a cause.
func TestDebounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &logbuf.Buffer{}
		s := &Store{logger: slog.New(slog.NewTextHandler(logs, nil))}
		events, errs := make(chan fsnotify.Event), make(chan error)
		var mu sync.Mutex // the race detector does not count synctest.Wait as synchronization
		var at []time.Time
		reloads := func(since time.Time) (out []time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			for _, a := range at {
				if a.After(since) {
					out = append(out, a.Sub(since))
				}
			}
			return out
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- s.debounce(ctx, events, errs, func() {
				mu.Lock()
				at = append(at, time.Now())
				mu.Unlock()
			})
		}()
		start := time.Now()

		time.Sleep(time.Hour) // no event: no read
		synctest.Wait()
		if got := reloads(start); len(got) != 0 {
			t.Fatalf("read %d times without an event", len(got))
		}
		start = time.Now()
		for range 3 { // a burst 150 ms apart: each event restarts the wait
			events <- fsnotify.Event{Name: "users.yaml", Op: fsnotify.Write}
			time.Sleep(150 * time.Millisecond)
		}
		synctest.Wait()
		if got := reloads(start); len(got) != 0 {
			t.Fatalf("read during the burst, at %v", got)
		}
		time.Sleep(watchDebounce - 150*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		if got := reloads(start); len(got) != 0 {
			t.Fatalf("read before the folder was quiet for %v: at %v", watchDebounce, got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got, want := reloads(start), 300*time.Millisecond+watchDebounce; len(got) != 1 || got[0] != want {
			t.Fatalf("reads at %v, want one at %v", got, want)
		}

		start = time.Now()
		errs <- errors.New("queue overflow")
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := reloads(start); len(got) != 1 || got[0] != watchDebounce {
			t.Fatalf("after a watch error, reads at %v, want one at %v", got, watchDebounce)
		}
		if !strings.Contains(logs.String(), "queue overflow") {
			t.Errorf("watch error not logged: %s", logs.String())
		}

		cancel()
		if err := <-done; err != nil {
			t.Errorf("debounce: %v", err)
		}
	})
}
