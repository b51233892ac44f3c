package bus

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Events enqueued by another process reach the running bus's rules; a file that is not an
// event is set aside as *.bad instead of blocking the inbox.
func TestInbox(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(dir, Config{InboxInterval: 10 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	var mu sync.Mutex
	var got []string
	if err := b.AddRule(Rule{Name: "r", Pattern: `{"source":["test"]}`, Target: TargetFunc(func(_ context.Context, ev []byte) error {
		mu.Lock()
		got = append(got, string(ev))
		mu.Unlock()
		return nil
	})}); err != nil {
		t.Fatal(err)
	}
	if running, err := Running(dir); err != nil || !running {
		t.Fatalf("Running = %v, %v while open", running, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "inbox", "0-garbage.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	ev := `{"version":"0","id":"e-1","detail-type":"t","source":"test","account":"1","time":"2026-12-05T00:00:00Z","region":"r","resources":[],"detail":{"a":1}}`
	if _, err := Enqueue(dir, []byte(ev)); err != nil {
		t.Fatal(err)
	}
	if _, err := Enqueue(dir, []byte(`{"source":""}`)); err == nil {
		t.Error("Enqueue accepted a non-event")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the enqueued event was not delivered")
		}
	}
	if got[0] != ev {
		t.Errorf("delivered %s", got[0])
	}
	if n, err := Pending(dir); n != 0 || err != nil {
		t.Errorf("pending %d %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "inbox", "0-garbage.json.bad")); err != nil {
		t.Errorf("the bad file was not set aside: %v", err)
	}
	b.Close(context.Background())
	if running, err := Running(dir); err != nil || running {
		t.Errorf("Running = %v, %v after Close", running, err)
	}
}
