package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
)

func putEvent(t *testing.T, b *bus.Bus, key string) string {
	t.Helper()
	e, err := event.NewObjectCreated(event.S3Change{
		Account: "000000000000", Region: "us-east-1", Bucket: "ferry", Key: key, Size: 1,
		ETag: "0cc175b9c0f1b6a831c399e269772661", Sequencer: "0000000000000001", Requester: "ferry",
		Reason: event.ReasonPutObject,
	})
	if err != nil {
		t.Fatal(err)
	}
	env, err := event.Raw(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	return e.ID
}

func TestEvents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "events")
	b, err := bus.Open(dir, bus.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	ids := []string{putEvent(t, b, "incoming/demo/a.csv"), putEvent(t, b, "incoming/demo/b c.csv")}

	// While the bus is open (as under `ferry serve`), the log prints as JSON lines, in order.
	r := ferry(t, "", "events", "--dir", dir)
	if r.code != 0 {
		t.Fatalf("events: code %d, stderr %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != len(ids) {
		t.Fatalf("events printed %d lines, want %d:\n%s", len(lines), len(ids), r.stdout)
	}
	for i, l := range lines {
		e, err := event.DecodeS3([]byte(l))
		if err != nil {
			t.Fatalf("line %d is not an S3 event: %v\n%s", i, err, l)
		}
		if e.ID != ids[i] {
			t.Errorf("line %d has id %s, want %s", i, e.ID, ids[i])
		}
	}
	if e, _ := event.DecodeS3([]byte(lines[1])); e.Detail.Object.Key != "incoming/demo/b c.csv" {
		t.Errorf("key printed as %q, want the raw key", e.Detail.Object.Key)
	}

	// --follow prints what exists, then new events as they are put, until cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb logbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"events", "--dir", dir, "--follow", "--poll", "10ms"}, strings.NewReader(""), &out, &errb)
	}()
	newID := putEvent(t, b, "incoming/demo/later.csv")
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(out.String(), "\n") < 3 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("follow printed %q, want 3 events", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("events --follow exited %d: %s", code, errb.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events --follow did not stop when cancelled")
	}
	last := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")[2]
	var got struct{ ID string }
	if err := json.Unmarshal([]byte(last), &got); err != nil || got.ID != newID {
		t.Errorf("followed event %s, want id %s (%v)", last, newID, err)
	}
}

func TestEventsErrors(t *testing.T) {
	if r := ferry(t, "", "events", "--dir", filepath.Join(t.TempDir(), "missing")); r.code != 1 || !strings.Contains(r.stderr, "missing") {
		t.Errorf("missing dir: code %d, stderr %q", r.code, r.stderr)
	}
	if r := ferry(t, "", "events", "extra"); r.code != 2 {
		t.Errorf("extra argument: code %d, want 2", r.code)
	}
}
