package handler

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/route"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// newEnvRoutes is newEnv with another routes file.
func newEnvRoutes(t *testing.T, routes string) *env {
	t.Helper()
	srv := s3test.Start(t)
	cfg, err := route.Load(routes)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, s3: srv.Client(), bucket: srv.Bucket, events: &recorder{}, metrics: &bytes.Buffer{}}
	if e.h, err = NewTransform(TransformConfig{
		S3: e.s3, Routes: cfg, Ledger: ledger.New(e.s3, srv.Bucket, ""), Events: e.events,
		Metrics: NewMetrics(e.metrics, "", "transform"), Log: testLogger(t), Account: "111122223333", Region: "us-east-1",
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

// gz compresses n bytes repeating pattern, made as they are compressed.
func gz(t *testing.T, pattern string, n int) string {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	chunk := bytes.Repeat([]byte(pattern), (64<<10)/len(pattern)+1)[:64<<10]
	for left := n; left > 0; left -= len(chunk) {
		if _, err := zw.Write(chunk[:min(left, len(chunk))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func zipFile(t *testing.T, entries map[string]string, zeros int) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
		if name == "zeros.csv" {
			w.Write(make([]byte, zeros))
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// notices renders the notifications of published events through the notify handler.
type notices struct {
	mu  sync.Mutex
	got []notify.Notification
}

func (n *notices) Publish(_ context.Context, x notify.Notification) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, x)
	return nil
}

// Hostile files through the whole transform handler over versitygw: each is refused with the
// reason in its File Rejected event and in the rejection notice people read, the input is
// quarantined, the Go heap stays bounded while it is processed, and no key is written outside
// the routes' output and quarantine prefixes (the ledger aside). A well-formed archive with a
// sub-folder lands inside the output prefix.
func TestHostileFilesAreRejectedWithinBounds(t *testing.T) {
	e := newEnvRoutes(t, "testdata/bounds.yaml")
	pub := &notices{}
	nh, err := NewNotify(NotifyConfig{Publisher: pub, Log: testLogger(t), Datasets: e.h.cfg.Routes.Datasets})
	if err != nil {
		t.Fatal(err)
	}
	// Each upload its own transfer id, as the gateway gives: one id is one content (a rename keeps it).
	alice := func(id string) map[string]string { return map[string]string{MetaUser: "alice", MetaTransferID: id} }
	for i, tc := range []struct {
		name, key, body string
		why             string // in the reason
	}{
		{"gzip bomb: 1 GiB of zeros", "incoming/alice/bomb.csv.gz", gz(t, "\x00", 1<<30), "over 500x (a gzip bomb? the route's max_ratio)"},
		{"1 GiB line", "trusted/alice/line.csv.gz", gz(t, "abcdefgh", 1<<30), "line longer than 16MiB (the route's max_line_bytes)"},
		{"two million columns", "incoming/alice/wide.csv", strings.Repeat(",", 2<<20) + "\n", "more than 10000 columns (the route's max_columns)"},
		{"zip bomb", "incoming/alice/bomb.zip", zipFile(t, map[string]string{"zeros.csv": ""}, 256<<20), "zip bomb?"},
		{"entry climbing out", "incoming/alice/slip.zip", zipFile(t, map[string]string{"ok.csv": "a\n1\n", "../../../processed/bob/evil.csv": "x\n"}, 0),
			`unsafe entry name "../../../processed/bob/evil.csv"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tid := "tx-bounds-" + string(rune('a'+i))
			ev := e.upload(tc.key, tc.body, alice(tid))
			before := len(e.events.all())
			var herr error
			grew := testtool.HeapGrowth(func() { herr = e.h.Handle(ctx(t), ev) })
			if herr != nil {
				t.Fatalf("handle: %v", herr)
			}
			evs := e.fileEvents()
			if len(evs) != before+1 || evs[before].DetailType != event.DetailTypeFileRejected {
				t.Fatalf("events %+v, want one File Rejected", evs[before:])
			}
			d := evs[before].Detail
			reason := d.Files[0].Reason
			if !strings.Contains(reason, tc.why) || d.TransferID != tid {
				t.Errorf("reason %q (transfer %q), want %q", reason, d.TransferID, tc.why)
			}
			if _, _, ok := e.get(d.Files[0].Quarantine); !ok || !strings.HasPrefix(d.Files[0].Quarantine, "quarantine/alice/") {
				t.Errorf("quarantine %q missing", d.Files[0].Quarantine)
			}
			raw, _ := json.Marshal(e.events.all()[before])
			if err := nh.Handle(ctx(t), raw); err != nil {
				t.Fatal(err)
			}
			n := pub.got[len(pub.got)-1]
			if !strings.Contains(n.Message, "Why:") || !strings.Contains(n.Message, tc.why) || !strings.Contains(n.Message, tid) {
				t.Errorf("rejection notice lacks the reason or the transfer id:\n%s", n.Message)
			}
			if grew > 128<<20 {
				t.Errorf("heap grew by %d MiB while handling it", grew>>20)
			}
			t.Logf("%s (%d bytes uploaded): %q; heap +%.1f MiB", tc.name, len(tc.body), reason, float64(grew)/(1<<20))
		})
	}
	// A well-formed archive lands inside the output prefix, sub-folder included.
	e.handle(e.upload("incoming/alice/good.zip", zipFile(t, map[string]string{"sub/ok.csv": "a,b\n1,2\n"}, 0), alice("tx-bounds-good")))
	if _, _, ok := e.get("processed/alice/sub/ok.csv"); !ok {
		t.Errorf("processed/alice/sub/ok.csv missing: %v", e.keys("processed/"))
	}
	out, err := e.s3.ListObjectsV2(ctx(t), &s3.ListObjectsV2Input{Bucket: aws.String(e.bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.Contents {
		k := aws.ToString(o.Key)
		switch {
		case strings.HasPrefix(k, "incoming/alice/"), strings.HasPrefix(k, "trusted/alice/"), strings.HasPrefix(k, "quarantine/alice/"),
			strings.HasPrefix(k, ledger.DefaultPrefix), k == "processed/alice/sub/ok.csv":
		default:
			t.Errorf("key %q written outside the output and quarantine prefixes", k)
		}
	}
}
