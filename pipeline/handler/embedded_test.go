package handler

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/notify"
)

var (
	_ bus.Target = (*Transform)(nil)
	_ bus.Target = (*Notify)(nil)
	_ Emitter    = (*bus.Bus)(nil)
)

// TestHandlersOnEmbeddedBus wires both handlers as targets of the in-process bus, as the
// embedded default does: upload events (one delivered twice) -> transform -> File events on the
// same bus -> notify -> local sink. One notification per upload, one for the batch.
func TestHandlersOnEmbeddedBus(t *testing.T) {
	e := newEnv(t)
	b, err := bus.Open(t.TempDir(), bus.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(ctx(t)) })
	e.h.cfg.Events = b
	outbox := filepath.Join(t.TempDir(), "outbox.jsonl")
	sink, err := notify.NewLocalSink(notify.LocalConfig{Outbox: outbox}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nh, err := NewNotify(NotifyConfig{Publisher: sink, Ledger: ledger.New(e.s3, e.bucket, ""), Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	fast := bus.RetryPolicy{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	for _, r := range []bus.Rule{
		{Name: "transform", Pattern: `{"source":["aws.s3"],"detail-type":["Object Created"]}`, Target: e.h, Retry: fast},
		{Name: "notify", Pattern: `{"source":["ferry.pipeline"]}`, Target: nh, Retry: fast},
	} {
		if err := b.AddRule(r); err != nil {
			t.Fatal(err)
		}
	}
	put := func(raw []byte) {
		env, err := event.DecodeEnvelope(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Put(ctx(t), env); err != nil {
			t.Fatal(err)
		}
	}
	good := e.upload("incoming/alice/a.csv", goodCSV, nil)
	put(good)
	put(good)
	put(e.upload("incoming/alice/bad.csv", "a,b\n1\n", nil))
	put(e.upload("batches/dan/1.csv", goodCSV, nil))
	put(e.upload("batches/dan/2.csv", goodCSV, nil))
	put(e.upload("batches/dan/go.done", "", nil))

	var got []notify.Notification
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		got = readOutbox(t, outbox)
		if len(got) >= 3 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would land now
	got = readOutbox(t, outbox)
	if len(got) != 3 {
		t.Fatalf("%d notifications, want 3: %+v", len(got), got)
	}
	status := map[string]int{}
	for _, n := range got {
		if n.Dataset == "batches" && n.Subject != "[batches] Batch complete from dan: 2 processed, 0 rejected" {
			t.Errorf("batch notification %+v", n)
		}
		status[n.Attributes["status"]+"/"+n.Dataset]++
	}
	if status["processed/demo"] != 1 || status["rejected/demo"] != 1 || status["processed/batches"] != 1 {
		t.Errorf("notifications %v", status)
	}
}

func readOutbox(t *testing.T, file string) []notify.Notification {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []notify.Notification
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var n notify.Notification
		if err := json.Unmarshal(sc.Bytes(), &n); err != nil {
			t.Fatalf("outbox line %q: %v", sc.Text(), err)
		}
		out = append(out, n)
	}
	return out
}
