package event

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestFileEventRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		files   []FileResult
		want    string
		wantErr string
	}{
		{"processed", []FileResult{{Key: "incoming/a/x.csv", Outputs: []FileOutput{{Key: "processed/a/x.jsonl", Size: 9}}, Records: 2}}, DetailTypeFileProcessed, ""},
		{"rejected", []FileResult{{Key: "incoming/a/x.csv", Quarantine: "quarantine/a/x.csv", Reason: "bad", Line: 3}}, DetailTypeFileRejected, ""},
		{"batch with one rejected", []FileResult{{Key: "b/1.csv"}, {Key: "b/2.csv", Reason: "bad"}}, DetailTypeFileRejected, ""},
		{"no files", nil, "", "no detail.files"},
		{"file without key", []FileResult{{}}, "", "missing key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := FileDetail{ID: "id1", Route: "r", Dataset: "demo", User: "a", Bucket: "bkt", Files: tt.files}
			e, err := NewFileEvent(d, "111122223333", "us-east-1", time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.DetailType != tt.want || e.Source != SourcePipeline || e.Resources[0] != "arn:aws:s3:::bkt" || e.Time.Nanosecond() != 0 {
				t.Errorf("event %+v", e)
			}
			raw, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			if back.Detail.Files[len(tt.files)-1].Key != tt.files[len(tt.files)-1].Key || back.ID != e.ID {
				t.Errorf("round trip %+v", back)
			}
		})
	}
	if _, err := DecodeFile([]byte(`{"source":"aws.s3","detail-type":"Object Created","detail":{}}`)); err == nil {
		t.Error("an S3 event decoded as a file event")
	}
}
