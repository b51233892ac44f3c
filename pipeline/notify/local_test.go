package notify_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferrygw/ferry/pipeline/notify"
)

func readOutbox(t *testing.T, path string) []notify.Notification {
	t.Helper()
	f, err := os.Open(path)
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

func TestLocalSinkOutboxAndWebhook(t *testing.T) {
	var mu sync.Mutex
	var posted []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", 400)
			return
		}
		mu.Lock()
		posted = append(posted, string(body))
		mu.Unlock()
	}))
	defer hook.Close()
	outbox := filepath.Join(t.TempDir(), "sub", "outbox.jsonl")
	sink, err := notify.NewLocalSink(notify.LocalConfig{Outbox: outbox, Webhook: hook.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Concurrent publishers never interleave lines.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := notify.Notification{ID: string(rune('a' + i)), Dataset: "demo", Subject: "report.csv arrived",
				Message: strings.Repeat("x", 10000), Attributes: map[string]string{"status": "processed"}}
			if err := sink.Publish(context.Background(), n); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got := readOutbox(t, outbox)
	if len(got) != 20 || len(posted) != 20 {
		t.Fatalf("outbox has %d lines, webhook got %d posts, want 20 each", len(got), len(posted))
	}
	for _, n := range got {
		if n.Dataset != "demo" || n.Attributes["status"] != "processed" || len(n.Message) != 10000 || n.Time.IsZero() {
			t.Errorf("outbox line = %+v", n)
		}
	}
}

func TestLocalSinkErrors(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	outbox := filepath.Join(t.TempDir(), "outbox.jsonl")
	sink, err := notify.NewLocalSink(notify.LocalConfig{Outbox: outbox, Webhook: failing.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = sink.Publish(context.Background(), notify.Notification{Dataset: "demo", Subject: "s", Message: "m"})
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("webhook 503 = %v, want an error to retry", err)
	}
	if err := sink.Publish(context.Background(), notify.Notification{Subject: "no dataset"}); err == nil {
		t.Error("a notification without a dataset was accepted")
	}
	if _, err := notify.NewLocalSink(notify.LocalConfig{}, nil); err == nil {
		t.Error("a sink without an outbox was accepted")
	}
}

// The outbox line is what SNS would be sent (subject, structure, message, attributes) and what a
// subscriber of each protocol would receive.
func TestLocalSinkShowsDeliveries(t *testing.T) {
	outbox := filepath.Join(t.TempDir(), "outbox.jsonl")
	sink, err := notify.NewLocalSink(notify.LocalConfig{Outbox: outbox}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := notify.Notification{ID: "x", Dataset: "demo", Subject: "[demo] Rechazado: línea 7", Message: "Motivo: ...\n",
		SMS: "malo.csv rechazado", JSON: []byte(`{"kind":"rejected"}`), Attributes: map[string]string{"status": "rejected"}}
	if err := sink.Publish(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(outbox)
	if err != nil {
		t.Fatal(err)
	}
	var e notify.OutboxEntry
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatal(err)
	}
	w, _ := n.Wire()
	if e.Subject != "[demo] Rechazado: linea 7" || e.Structure != "json" || e.Message != w.Message ||
		e.Attributes["dataset"] != "demo" || e.Attributes["status"] != "rejected" {
		t.Errorf("entry %+v", e)
	}
	want := map[string]string{"email": n.Message, "sms": n.SMS, "https": string(n.JSON), "sqs": string(n.JSON), "lambda": string(n.JSON)}
	for p, m := range want {
		if e.Deliveries[p] != m {
			t.Errorf("delivery %s = %q, want %q", p, e.Deliveries[p], m)
		}
	}
}
