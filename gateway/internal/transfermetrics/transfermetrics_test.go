package transfermetrics_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/transfermetrics"
)

func TestCountsOutcomesAndBytes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := transfermetrics.New(reg)
	fsys := m.Wrap(memstore.New(), "sftp")
	ctx := context.Background()

	put := func(name, body string, abort bool) {
		t.Helper()
		up, err := fsys.Create(ctx, name, storage.CreateOptions{Protocol: "sftp"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(up, body); err != nil {
			t.Fatal(err)
		}
		if abort {
			if err := up.Abort(errors.New("client went away")); err != nil {
				t.Fatal(err)
			}
			if err := up.Close(); !errors.Is(err, storage.ErrAborted) {
				t.Fatalf("Close after Abort = %v, want ErrAborted", err)
			}
			return
		}
		if err := up.Close(); err != nil {
			t.Fatal(err)
		}
	}
	put("/a", "hello", false)
	put("/b", "world!", true)

	r, err := fsys.Open(ctx, "/a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err != nil {
		t.Fatal(err)
	}
	r.Close()

	want := map[string]float64{
		`ferry_uploads_total{protocol="sftp",result="committed"}`: 1,
		`ferry_uploads_total{protocol="sftp",result="aborted"}`:   1,
		`ferry_upload_bytes_total{protocol="sftp"}`:               11,
		`ferry_download_bytes_total{protocol="sftp"}`:             5,
		`ferry_uploads_in_progress{protocol="sftp"}`:              0,
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			key := f.GetName() + "{"
			for i, l := range mt.GetLabel() {
				if i > 0 {
					key += ","
				}
				key += l.GetName() + `="` + l.GetValue() + `"`
			}
			key += "}"
			switch {
			case mt.GetCounter() != nil:
				got[key] = mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				got[key] = mt.GetGauge().GetValue()
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
