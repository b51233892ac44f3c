package event

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func completedDetail() GatewayDetail {
	start := time.Date(2026, 3, 2, 9, 15, 20, 125e6, time.UTC)
	return GatewayDetail{
		User: "demo", Protocol: ProtocolSFTP, SessionID: "s-1", ClientAddress: "127.0.0.1:5000",
		Bucket: "ferry", Key: "incoming/demo/a.csv", Bytes: 0,
		SHA256:     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		TransferID: "t-1", StartTime: start, EndTime: start.Add(1500 * time.Millisecond),
	}
}

func bannedDetail() GatewayDetail {
	return GatewayDetail{User: "root", Protocol: ProtocolSFTP, ClientAddress: "192.0.2.66", FailureReason: "score 20",
		BannedUntil: time.Date(2026, 3, 2, 9, 36, 10, 0, time.UTC), Score: 20, Bans: 1}
}

func TestNewGatewayEvent(t *testing.T) {
	d := completedDetail()
	e, err := NewGatewayEvent(DetailTypeTransferCompleted, d, "000000000000", "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if !e.Time.Equal(d.EndTime.Truncate(time.Second)) || e.Source != SourceGateway || e.ID == "" {
		t.Errorf("envelope %+v", e)
	}
	if len(e.Resources) != 1 || e.Resources[0] != "arn:aws:s3:::ferry" {
		t.Errorf("resources %v", e.Resources)
	}
	b, _ := json.Marshal(e)
	// A zero-byte upload still says "bytes":0; the times keep their sub-second precision.
	for _, want := range []string{`"bytes":0`, `"start_time":"2026-03-02T09:15:20.125Z"`, `"end_time":"2026-03-02T09:15:21.625Z"`, `"session_id":"s-1"`, `"client_address":"127.0.0.1:5000"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("missing %s in %s", want, b)
		}
	}
	if strings.Contains(string(b), "failure_reason") {
		t.Errorf("failure_reason on a completed transfer: %s", b)
	}

	lf, err := NewGatewayEvent(DetailTypeLoginFailed, GatewayDetail{
		User: "x", Protocol: ProtocolFTP, SessionID: "s-2", ClientAddress: "[::1]:21", FailureReason: "invalid credentials",
	}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(lf)
	if strings.Contains(string(b), "start_time") || strings.Contains(string(b), "end_time") || !strings.Contains(string(b), `"resources":[]`) {
		t.Errorf("login failed %s", b)
	}
}

func TestValidateGateway(t *testing.T) {
	tests := []struct {
		name       string
		detailType string
		mut        func(*GatewayDetail)
		want       string // "" means valid
	}{
		{"completed", DetailTypeTransferCompleted, func(d *GatewayDetail) {}, ""},
		{"completed without key", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.Key = "" }, "missing key"},
		{"completed without sha256", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.SHA256 = "" }, "sha256"},
		{"completed upper-case sha256", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.SHA256 = strings.ToUpper(d.SHA256) }, "sha256"},
		{"completed negative bytes", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.Bytes = -1 }, "negative bytes"},
		{"completed directory marker", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.Key = "incoming/demo/dir/" }, "directory marker"},
		{"completed with failure", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.FailureReason = "x" }, "failure_reason"},
		{"completed without end", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.EndTime = time.Time{} }, "missing end_time"},
		{"completed end before start", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.EndTime = d.StartTime.Add(-time.Second) }, "before start_time"},
		{"completed without user", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.User = "" }, "missing user"},
		{"completed without session", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.SessionID = "" }, "session_id"},
		{"completed without transfer id", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.TransferID = "" }, "transfer_id"},
		{"failed", DetailTypeTransferFailed, func(d *GatewayDetail) { d.SHA256 = ""; d.FailureReason = "aborted" }, ""},
		{"failed without reason", DetailTypeTransferFailed, func(d *GatewayDetail) { d.SHA256 = "" }, "missing failure_reason"},
		{"failed with sha256", DetailTypeTransferFailed, func(d *GatewayDetail) { d.FailureReason = "aborted" }, "partial upload"},
		{"login failed", DetailTypeLoginFailed, func(d *GatewayDetail) {
			*d = GatewayDetail{Protocol: "sftp", SessionID: "s", ClientAddress: "a", FailureReason: "bad password"}
		}, ""},
		{"login failed with key", DetailTypeLoginFailed, func(d *GatewayDetail) { d.FailureReason = "bad password" }, "transfer fields"},
		{"login failed with ban fields", DetailTypeLoginFailed, func(d *GatewayDetail) {
			*d = GatewayDetail{Protocol: "sftp", SessionID: "s", ClientAddress: "a", FailureReason: "x", Score: 3}
		}, "ban fields"},
		{"completed with ban fields", DetailTypeTransferCompleted, func(d *GatewayDetail) { d.Bans = 1 }, "ban fields"},
		{"client banned", DetailTypeClientBanned, func(d *GatewayDetail) { *d = bannedDetail() }, ""},
		{"client banned without user", DetailTypeClientBanned, func(d *GatewayDetail) { *d = bannedDetail(); d.User = "" }, ""},
		{"client banned without end", DetailTypeClientBanned, func(d *GatewayDetail) { *d = bannedDetail(); d.BannedUntil = time.Time{} }, "missing banned_until"},
		{"client banned without reason", DetailTypeClientBanned, func(d *GatewayDetail) { *d = bannedDetail(); d.FailureReason = "" }, "missing failure_reason"},
		{"client banned without score", DetailTypeClientBanned, func(d *GatewayDetail) { *d = bannedDetail(); d.Score = 0 }, "must be positive"},
		{"client banned without address", DetailTypeClientBanned, func(d *GatewayDetail) { *d = bannedDetail(); d.ClientAddress = "" }, "missing client_address"},
		{"client banned with a session", DetailTypeClientBanned, func(d *GatewayDetail) { *d = bannedDetail(); d.SessionID = "s" }, "session fields"},
		{"client banned with a key", DetailTypeClientBanned, func(d *GatewayDetail) { *d = bannedDetail(); d.Key = "k" }, "transfer or session"},
		{"unknown type", "Transfer Started", func(d *GatewayDetail) {}, "not a gateway event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := completedDetail()
			tt.mut(&d)
			_, err := NewGatewayEvent(tt.detailType, d, "", "")
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestRawAndAs(t *testing.T) {
	e, err := NewGatewayEvent(DetailTypeTransferCompleted, completedDetail(), "1", "r")
	if err != nil {
		t.Fatal(err)
	}
	env, err := Raw(e)
	if err != nil {
		t.Fatal(err)
	}
	back, err := As[GatewayDetail](env)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(e)
	b, _ := json.Marshal(back)
	jsonEqual(t, a, b)
	if _, err := As[GatewayDetail](Envelope{DetailType: "x"}); err == nil {
		t.Error("As accepted an empty detail")
	}
}
