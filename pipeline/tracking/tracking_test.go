package tracking

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

func TestKeyRoundTrip(t *testing.T) {
	x := New("ferry", ".ferry/ledger/")
	at := time.Date(2026, 12, 6, 23, 59, 58, 123e6, time.UTC)
	long := "incoming/alice/" + strings.Repeat("ñ, =x/", 200) + "end.csv"
	cases := []struct {
		name string
		rec  Record
		cut  bool
	}{
		{"received", Record{Kind: KindReceived, FileID: FileID("ferry", "incoming/alice/a b,c=d.csv", "e1"), Day: Day(at), Time: at,
			Bucket: "ferry", Key: "incoming/alice/a b,c=d.csv", ETag: "e1", Size: 27, User: "alice", Protocol: "sftp",
			TransferID: "0123456789abcdef01234567", Route: "demo-csv", Dataset: "demo"}, false},
		{"waiting", Record{Kind: KindWaiting, FileID: "f", Day: "2026-12-06", Time: at, For: ForSidecar, What: "incoming/alice/a.csv.sha256"}, false},
		{"rejected", Record{Kind: KindRejected, FileID: "f", Day: "2026-12-06", Time: at, Line: 3, Batch: "bid"}, false},
		{"notified", Record{Kind: KindNotified, FileID: "f", Day: "2026-12-06", Time: at, Dataset: "demo", MessageID: "m-1"}, false},
		{"long key", Record{Kind: KindReceived, FileID: "f", Day: "2026-12-06", Time: at, Bucket: "ferry", Key: long, Size: 1}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := x.Key(tc.rec)
			if last := key[strings.LastIndexByte(key, '/')+1:]; len(last) > 255 {
				t.Fatalf("last segment of %d bytes", len(last))
			}
			if !strings.HasPrefix(key, ".ferry/ledger/status/2026-12-06/"+tc.rec.FileID+"/") {
				t.Fatalf("key %q", key)
			}
			got, err := x.ParseKey(key)
			if err != nil {
				t.Fatal(err)
			}
			if got.Cut() != tc.cut {
				t.Fatalf("cut = %v, want %v (%s)", got.Cut(), tc.cut, key)
			}
			if tc.cut {
				if !strings.HasPrefix(long, got.Key) || got.Key == long {
					t.Fatalf("shortened key %q is not a prefix of the key", got.Key)
				}
				return
			}
			if got != tc.rec {
				t.Fatalf("round trip\n got %+v\nwant %+v", got, tc.rec)
			}
		})
	}
	for _, bad := range []string{".ferry/ledger/status/2026-12-06/f", ".ferry/ledger/status/2026-12-06/f/z,t=1", "other/x/y/z"} {
		if _, err := x.ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

// TestWriteAndList writes a day's records to a real S3 server (versitygw) and lists them back,
// a shortened one completed from its body, and finds a transfer's objects.
func TestWriteAndList(t *testing.T) {
	srv := s3test.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	x := New(srv.Bucket, ".ferry/ledger/")
	w := Writer{API: srv.Client(), Index: x}
	r := Reader{API: srv.Client(), Index: x}
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	long := "incoming/bob/" + strings.Repeat("x", 250) + ".csv"
	recs := []Record{
		{Kind: KindReceived, FileID: FileID(srv.Bucket, "incoming/alice/a.csv", "e1"), Day: Day(at), Time: at, Bucket: srv.Bucket,
			Key: "incoming/alice/a.csv", ETag: "e1", Size: 10, User: "alice", Protocol: "ftps", TransferID: "tid-1", Route: "r", Dataset: "d"},
		{Kind: KindProcessed, FileID: FileID(srv.Bucket, "incoming/alice/a.csv", "e1"), Day: Day(at), Time: at.Add(time.Second), Outputs: 1, Records: 2},
		{Kind: KindReceived, FileID: FileID(srv.Bucket, long, "e2"), Day: Day(at), Time: at, Bucket: srv.Bucket, Key: long, ETag: "e2", Size: 5},
		{Kind: KindReceived, FileID: FileID(srv.Bucket, "incoming/carol/c.csv", "e3"), Day: "2026-12-07", Time: at.Add(24 * time.Hour),
			Bucket: srv.Bucket, Key: "incoming/carol/c.csv", ETag: "e3"},
	}
	for _, rec := range recs {
		if err := w.Put(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Put(ctx, Record{Kind: KindReceived}); err == nil {
		t.Error("an incomplete record was written")
	}
	var got []Record
	if err := r.Day(ctx, "2026-12-06", func(rec Record) error { got = append(got, rec); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d records on 2026-12-06, want 3: %+v", len(got), got)
	}
	byKind := map[string]int{}
	for _, rec := range got {
		byKind[rec.Kind]++
		if rec.Key == long && rec.Size != 5 {
			t.Errorf("shortened record not completed from its body: %+v", rec)
		}
	}
	if byKind[KindReceived] != 2 || byKind[KindProcessed] != 1 {
		t.Errorf("kinds %v", byKind)
	}
	file, err := r.File(ctx, recs[0].FileID, at.Add(23*time.Hour+59*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(file) != 2 {
		t.Errorf("file records %+v", file)
	}
	tf, err := r.Transfer(ctx, "tid-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(tf) != 1 || tf[0].FileID != recs[0].FileID || tf[0].Day != "2026-12-06" {
		t.Errorf("transfer lookup %+v", tf)
	}
}
