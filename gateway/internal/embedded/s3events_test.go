package embedded_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/embedded"
	"github.com/ferrygw/ferry/gateway/internal/embedded/s3server"
	"github.com/ferrygw/ferry/pipeline/event"
)

func TestFromChange(t *testing.T) {
	at := time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name                 string
		c                    s3server.Change
		detailType, reason   string
		wantSize             bool
		dirMarker, multipart bool
	}{
		{"put", s3server.Change{Bucket: "ferry", Key: "incoming/demo/a b+c.csv", Size: 5, ETag: `"b1946ac92492d2347c6235b4d2611184"`,
			Reason: event.ReasonPutObject, Sequencer: "0000000000000001", RequestID: "r1", SourceIP: "127.0.0.1:5555", Requester: "ferry", Time: at},
			event.DetailTypeObjectCreated, event.ReasonPutObject, true, false, false},
		{"multipart", s3server.Change{Bucket: "ferry", Key: "big.bin", Size: 20 << 20, ETag: "abc-3",
			Reason: event.ReasonCompleteMultipartUpload, Sequencer: "0000000000000002", Time: at},
			event.DetailTypeObjectCreated, event.ReasonCompleteMultipartUpload, true, false, true},
		{"directory marker", s3server.Change{Bucket: "ferry", Key: "incoming/demo/dir/", Size: 0, ETag: "d41d8cd98f00b204e9800998ecf8427e",
			Reason: event.ReasonPutObject, Sequencer: "0000000000000003", Time: at},
			event.DetailTypeObjectCreated, event.ReasonPutObject, true, true, false},
		{"delete", s3server.Change{Bucket: "ferry", Key: "old.csv", Deleted: true, Reason: event.ReasonDeleteObject,
			Sequencer: "0000000000000004", Time: at},
			event.DetailTypeObjectDeleted, event.ReasonDeleteObject, false, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, err := embedded.FromChange(tt.c, "us-east-1")
			if err != nil {
				t.Fatal(err)
			}
			d := e.Detail
			if e.Source != event.SourceS3 || e.DetailType != tt.detailType || d.Reason != tt.reason ||
				d.Bucket.Name != tt.c.Bucket || d.Object.Key != tt.c.Key || d.Object.Sequencer != tt.c.Sequencer ||
				e.Region != "us-east-1" || !e.Time.Equal(at) {
				t.Errorf("event = %+v", e)
			}
			if (d.Object.Size != nil) != tt.wantSize || (tt.wantSize && *d.Object.Size != tt.c.Size) {
				t.Errorf("size = %v, want present=%v %d", d.Object.Size, tt.wantSize, tt.c.Size)
			}
			if got := d.Object.IsDirectoryMarker(); got != tt.dirMarker {
				t.Errorf("IsDirectoryMarker = %v, want %v", got, tt.dirMarker)
			}
			// The wire form keeps the key raw and carries AWS's field names.
			raw, _ := json.Marshal(e)
			var m map[string]any
			json.Unmarshal(raw, &m)
			obj := m["detail"].(map[string]any)["object"].(map[string]any)
			if obj["key"] != tt.c.Key {
				t.Errorf("wire key = %v", obj["key"])
			}
			if tt.name == "put" && m["detail"].(map[string]any)["source-ip-address"] != "127.0.0.1" {
				t.Errorf("source-ip-address = %v", m["detail"].(map[string]any)["source-ip-address"])
			}
		})
	}
}
