package event

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonEqual compares two documents by meaning (key order and spacing aside).
func jsonEqual(t *testing.T, want, got []byte) {
	t.Helper()
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want: %v", err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got: %v", err)
	}
	if !reflect.DeepEqual(w, g) {
		t.Errorf("JSON differs\nwant: %s\n got: %s", compact(t, want), compact(t, got))
	}
}

func compact(t *testing.T, b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func int64p(v int64) *int64 { return &v }

func TestS3GoldenRoundTrip(t *testing.T) {
	tests := []struct {
		file         string
		detailType   string
		reason       string
		key          string
		size         *int64
		etag         string
		versionID    string
		sourceIP     string
		deletionType string
		multipart    bool
		dirMarker    bool
	}{
		{"s3-object-created.json", DetailTypeObjectCreated, ReasonPutObject, "example-key", int64p(5),
			"b1946ac92492d2347c6235b4d2611184", "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "1.2.3.4", "", false, false},
		{"s3-object-deleted.json", DetailTypeObjectDeleted, ReasonDeleteObject, "example-key", nil,
			EmptyETag, "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF", "1.2.3.4", DeletionTypeDeleteMarkerCreated, false, false},
		{"s3-object-deleted-lifecycle.json", DetailTypeObjectDeleted, ReasonLifecycleExpiration, "example-key", nil,
			EmptyETag, "mtB0cV.jejK63XkRNceanNMC.qXPWLeK", "", DeletionTypeDeleteMarkerCreated, false, false},
		{"s3-object-created-multipart.json", DetailTypeObjectCreated, ReasonCompleteMultipartUpload, "incoming/demo/big.bin", int64p(26214400),
			"f5d9d2b3c2e7a1b0c9e8d7f6a5b4c3d2-3", "", "203.0.113.7", "", true, false},
		// Raw key: the "+" stays a plus, spaces and non-ASCII stay as they are.
		{"s3-object-created-unicode-key.json", DetailTypeObjectCreated, ReasonPutObject, "incoming/demo/red flower+tulip ü 日本 100%.csv", int64p(1024),
			"0f343b0931126a20f133d67c2b018a3b", "", "198.51.100.23", "", false, false},
		{"s3-directory-marker.json", DetailTypeObjectCreated, ReasonPutObject, "incoming/demo/reports/", int64p(0),
			EmptyETag, "", "198.51.100.23", "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw := readGolden(t, tt.file)
			e, err := DecodeS3(raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := ValidateS3(e); err != nil {
				t.Errorf("golden event does not validate: %v", err)
			}
			d := e.Detail
			if e.DetailType != tt.detailType || d.Reason != tt.reason || d.Object.Key != tt.key ||
				d.Object.ETag != tt.etag || d.Object.VersionID != tt.versionID || d.SourceIPAddress != tt.sourceIP ||
				d.DeletionType != tt.deletionType {
				t.Errorf("decoded %+v", e)
			}
			if !reflect.DeepEqual(d.Object.Size, tt.size) {
				t.Errorf("size = %v, want %v", d.Object.Size, tt.size)
			}
			if got := d.Object.IsMultipart(); got != tt.multipart {
				t.Errorf("IsMultipart = %v", got)
			}
			if got := d.Object.IsDirectoryMarker(); got != tt.dirMarker {
				t.Errorf("IsDirectoryMarker = %v", got)
			}
			out, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, raw, out)
		})
	}
}

func TestGatewayGoldenRoundTrip(t *testing.T) {
	tests := []struct {
		file, detailType, user, protocol, key, reason string
		bytes                                         int64
	}{
		{"gateway-transfer-completed.json", DetailTypeTransferCompleted, "demo", ProtocolSFTP, "incoming/demo/red flower+tulip ü.csv", "", 26214400},
		{"gateway-transfer-failed.json", DetailTypeTransferFailed, "demo", ProtocolFTPS, "incoming/demo/partial.zip", "client disconnected before the end of the upload", 1048576},
		{"gateway-login-failed.json", DetailTypeLoginFailed, "admin", ProtocolSFTP, "", "invalid credentials", 0},
		{"gateway-client-banned.json", DetailTypeClientBanned, "admin", ProtocolFTPS, "", "score 20 within 10m0s reached 20 (last: a refused password)", 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw := readGolden(t, tt.file)
			e, err := DecodeGateway(raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := ValidateGateway(e); err != nil {
				t.Errorf("golden event does not validate: %v", err)
			}
			d := e.Detail
			if e.DetailType != tt.detailType || d.User != tt.user || d.Protocol != tt.protocol || d.Key != tt.key ||
				d.FailureReason != tt.reason || d.Bytes != tt.bytes {
				t.Errorf("decoded %+v", e)
			}
			out, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, raw, out)
		})
	}
}

// Our envelope must read and write exactly what aws-lambda-go's EventBridgeEvent does, so a
// Lambda can use either.
func TestEnvelopeMatchesLambdaEventBridgeEvent(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw := readGolden(t, filepath.Base(f))
			var theirs events.EventBridgeEvent
			if err := json.Unmarshal(raw, &theirs); err != nil {
				t.Fatal(err)
			}
			ours, err := DecodeEnvelope(raw)
			if err != nil {
				t.Fatal(err)
			}
			if ours.Version != theirs.Version || ours.ID != theirs.ID || ours.DetailType != theirs.DetailType ||
				ours.Source != theirs.Source || ours.Account != theirs.AccountID || !ours.Time.Equal(theirs.Time) ||
				ours.Region != theirs.Region || !reflect.DeepEqual(ours.Resources, theirs.Resources) {
				t.Errorf("envelopes differ:\nours   %+v\ntheirs %+v", ours, theirs)
			}
			jsonEqual(t, theirs.Detail, ours.Detail)
			a, _ := json.Marshal(theirs)
			b, _ := json.Marshal(ours)
			jsonEqual(t, a, b)
		})
	}
}

func TestDecodeRejectsOtherEvents(t *testing.T) {
	if _, err := DecodeS3(readGolden(t, "gateway-transfer-completed.json")); err == nil {
		t.Error("DecodeS3 accepted a gateway event")
	}
	if _, err := DecodeGateway(readGolden(t, "s3-object-created.json")); err == nil {
		t.Error("DecodeGateway accepted an S3 event")
	}
	restore := []byte(`{"version":"0","id":"x","detail-type":"Object Restore Completed","source":"aws.s3",
		"account":"1","time":"2021-11-12T00:00:00Z","region":"r","resources":[],"detail":{}}`)
	if _, err := DecodeS3(restore); err == nil {
		t.Error("DecodeS3 accepted an Object Restore Completed event")
	}
	for _, bad := range []string{``, `{}`, `{"source":"aws.s3","detail-type":"Object Created"}`, `{"source":"aws.s3","detail-type":"Object Created","detail":"x"}`} {
		if _, err := DecodeS3([]byte(bad)); err == nil {
			t.Errorf("DecodeS3(%q) succeeded", bad)
		}
	}
}

// A key must come out exactly as it went in: no form-decoding of "+" or "%XX".
func TestKeysAreNeverFormDecoded(t *testing.T) {
	e, err := DecodeS3(readGolden(t, "s3-object-created-unicode-key.json"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "incoming/demo/red flower+tulip ü 日本 100%.csv"
	if e.Detail.Object.Key != want {
		t.Fatalf("key %q, want %q", e.Detail.Object.Key, want)
	}
	// The same JSON through aws-lambda-go's classic S3 type would be decoded; ours must not be.
	raw := []byte(`{"key":"a+b%20c","size":1,"etag":"x","sequencer":"1"}`)
	var o S3Object
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatal(err)
	}
	if o.Key != "a+b%20c" {
		t.Errorf("key %q was altered", o.Key)
	}
}
