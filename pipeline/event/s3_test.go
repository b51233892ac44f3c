package event

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestNewObjectCreated(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 15, 27, 987654321, time.FixedZone("CET", 3600))
	e, err := NewObjectCreated(S3Change{
		Account: "000000000000", Region: "us-east-1", Time: at,
		Bucket: "ferry", Key: "incoming/demo/a b+c.csv", Size: 42,
		ETag: `"9e107d9d372bb6826bd81d3542a419d6-2"`, Sequencer: "0069a55b0f1c2d3e",
		Requester: "ferry", SourceIPAddress: "127.0.0.1:50123", Reason: ReasonCompleteMultipartUpload,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 3, 2, 8, 15, 27, 0, time.UTC); !e.Time.Equal(want) || e.Time.Location() != time.UTC {
		t.Errorf("time %v, want %v (UTC, whole seconds)", e.Time, want)
	}
	d := e.Detail
	if d.Object.ETag != "9e107d9d372bb6826bd81d3542a419d6-2" || !d.Object.IsMultipart() {
		t.Errorf("etag %q: quotes must go, -N suffix stay", d.Object.ETag)
	}
	if d.SourceIPAddress != "127.0.0.1" {
		t.Errorf("source ip %q, want the address without port", d.SourceIPAddress)
	}
	if !regexp.MustCompile(`^[0-9A-F]{16}$`).MatchString(d.RequestID) {
		t.Errorf("request id %q", d.RequestID)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	// What a consumer sees: the documented shape, raw key, no deletion-type, no version-id.
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["time"] != "2026-03-02T08:15:27Z" || m["source"] != "aws.s3" || m["detail-type"] != "Object Created" || m["version"] != "0" {
		t.Errorf("envelope %s", b)
	}
	if r, _ := m["resources"].([]any); len(r) != 1 || r[0] != "arn:aws:s3:::ferry" {
		t.Errorf("resources %v", m["resources"])
	}
	det := m["detail"].(map[string]any)
	obj := det["object"].(map[string]any)
	if obj["key"] != "incoming/demo/a b+c.csv" || obj["size"] != float64(42) {
		t.Errorf("object %v", obj)
	}
	for _, absent := range []string{"deletion-type"} {
		if _, ok := det[absent]; ok {
			t.Errorf("%s present: %s", absent, b)
		}
	}
	if _, ok := obj["version-id"]; ok {
		t.Errorf("version-id present on an unversioned object: %s", b)
	}
	back, err := DecodeS3(b)
	if err != nil || ValidateS3(back) != nil {
		t.Errorf("round trip: %v %v", err, ValidateS3(back))
	}
}

func TestNewObjectDeleted(t *testing.T) {
	e, err := NewObjectDeleted(S3Change{
		Account: "000000000000", Region: "us-east-1", Bucket: "ferry", Key: "incoming/demo/x",
		Size: 99, ETag: "ignored", Sequencer: "0069a55b0f1c2d3e", Requester: "ferry",
		SourceIPAddress: "::1", Reason: ReasonDeleteObject,
	})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(e.Time) > time.Minute || e.Time.Nanosecond() != 0 {
		t.Errorf("time %v: want now, whole seconds", e.Time)
	}
	b, _ := json.Marshal(e)
	s := string(b)
	if strings.Contains(s, `"size"`) {
		t.Errorf("Object Deleted has a size: %s", s)
	}
	if !strings.Contains(s, `"etag":"`+EmptyETag+`"`) || !strings.Contains(s, `"deletion-type":"Permanently Deleted"`) ||
		!strings.Contains(s, `"source-ip-address":"::1"`) {
		t.Errorf("Object Deleted %s", s)
	}

	lc, err := NewObjectDeleted(S3Change{Bucket: "ferry", Key: "k", Sequencer: "1", Requester: RequesterS3,
		Reason: ReasonLifecycleExpiration, DeletionType: DeletionTypeDeleteMarkerCreated})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(lc); strings.Contains(string(b), "source-ip-address") {
		t.Errorf("lifecycle delete with a source ip: %s", b)
	}
}

func TestConstructorsReject(t *testing.T) {
	ok := S3Change{Bucket: "b", Key: "k", Sequencer: "01", Requester: "r", Reason: ReasonPutObject}
	tests := []struct {
		name    string
		deleted bool
		mut     func(*S3Change)
		want    string
	}{
		{"delete reason on create", false, func(c *S3Change) { c.Reason = ReasonDeleteObject }, "not a create reason"},
		{"create reason on delete", true, func(c *S3Change) {}, "not a delete reason"},
		{"negative size", false, func(c *S3Change) { c.Size = -1 }, "negative size"},
		{"no bucket", false, func(c *S3Change) { c.Bucket = "" }, "bucket.name"},
		{"no key", false, func(c *S3Change) { c.Key = "" }, "object.key"},
		{"no sequencer", false, func(c *S3Change) { c.Sequencer = "" }, "sequencer"},
		{"bad sequencer", false, func(c *S3Change) { c.Sequencer = "xyz" }, "sequencer"},
		{"no requester", false, func(c *S3Change) { c.Requester = "" }, "requester"},
		{"bad deletion type", true, func(c *S3Change) { c.Reason = ReasonDeleteObject; c.DeletionType = "Gone" }, "deletion-type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mut(&c)
			var err error
			if tt.deleted {
				_, err = NewObjectDeleted(c)
			} else {
				_, err = NewObjectCreated(c)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestValidateS3(t *testing.T) {
	valid := func() S3Event {
		e, err := DecodeS3(readGolden(t, "s3-object-created.json"))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	tests := []struct {
		name string
		mut  func(*S3Event)
		want string
	}{
		{"size missing on created", func(e *S3Event) { e.Detail.Object.Size = nil }, "missing detail.object.size"},
		{"size on deleted", func(e *S3Event) {
			e.DetailType, e.Detail.Reason, e.Detail.DeletionType = DetailTypeObjectDeleted, ReasonDeleteObject, DeletionTypePermanentlyDeleted
		}, "size present"},
		{"deletion-type on created", func(e *S3Event) { e.Detail.DeletionType = DeletionTypePermanentlyDeleted }, "deletion-type"},
		{"wrong source", func(e *S3Event) { e.Source = SourceGateway }, "source"},
		{"bucket ARN missing", func(e *S3Event) { e.Resources = []string{} }, "bucket ARN"},
		{"other detail type", func(e *S3Event) { e.DetailType = "Object Restore Completed" }, "not an S3 object event"},
		{"no id", func(e *S3Event) { e.ID = "" }, "missing id"},
		{"no time", func(e *S3Event) { e.Time = time.Time{} }, "missing time"},
	}
	if err := ValidateS3(valid()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := valid()
			tt.mut(&e)
			if err := ValidateS3(e); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestObjectPredicates(t *testing.T) {
	tests := []struct {
		key       string
		size      *int64
		etag      string
		marker    bool
		multipart bool
	}{
		{"dir/", int64p(0), EmptyETag, true, false},
		{"dir/", nil, EmptyETag, true, false}, // Object Deleted of a marker
		{"dir/", int64p(3), "abc", false, false},
		{"dir", int64p(0), EmptyETag, false, false},
		{"a/b.csv", int64p(10), "abc-12", false, true},
		{"a/b.csv", int64p(10), "abc-", false, false},
		{"a/b.csv", int64p(10), "-3", false, false},
		{"a/b.csv", int64p(10), "abc-x1", false, false},
	}
	for _, tt := range tests {
		o := S3Object{Key: tt.key, Size: tt.size, ETag: tt.etag}
		if got := o.IsDirectoryMarker(); got != tt.marker {
			t.Errorf("%+v IsDirectoryMarker = %v", tt, got)
		}
		if got := o.IsMultipart(); got != tt.multipart {
			t.Errorf("%+v IsMultipart = %v", tt, got)
		}
	}
}

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

// An S3 event sent back by `ferry redrive` (EventBridge refuses aws.* sources from PutEvents)
// decodes as S3's own.
func TestDecodeRedrivenS3(t *testing.T) {
	ev, err := NewObjectCreated(S3Change{Account: "1", Region: "us-east-1", Bucket: "b", Key: "k", Size: 1, ETag: "e",
		Sequencer: "01", Requester: "1", Reason: ReasonPutObject})
	if err != nil {
		t.Fatal(err)
	}
	ev.Source = SourceRedrive
	raw, _ := json.Marshal(ev)
	got, err := DecodeS3(raw)
	if err != nil || got.Source != SourceS3 || got.Detail.Object.Key != "k" {
		t.Errorf("DecodeS3 = %+v, %v", got, err)
	}
	ev.Source = "other.source"
	raw, _ = json.Marshal(ev)
	if _, err := DecodeS3(raw); err == nil {
		t.Error("another source decoded as S3's")
	}
}
