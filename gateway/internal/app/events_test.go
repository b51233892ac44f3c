package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"

	"github.com/ferrygw/ferry/pipeline/event"
)

// readEvents returns the S3 events in the embedded default's durable log.
func readEvents(t *testing.T, dir string) []event.S3Event {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "data", "events", "seg-*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []event.S3Event
	for _, s := range segs {
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			env, err := event.DecodeEnvelope(line)
			if err != nil {
				t.Fatalf("event log line %s: %v", line, err)
			}
			if env.Source != event.SourceS3 {
				continue
			}
			e, err := event.DecodeS3(line)
			if err != nil {
				t.Fatalf("event log line %s: %v", line, err)
			}
			out = append(out, e)
		}
	}
	return out
}

func eventsFor(events []event.S3Event, key string) []event.S3Event {
	var out []event.S3Event
	for _, e := range events {
		if e.Detail.Object.Key == key {
			out = append(out, e)
		}
	}
	return out
}

// TestEmbeddedEvents: every object written through the gateway or straight to the embedded
// endpoint produces exactly one Object Created event, written before the write returns; a
// killed upload produces none; a directory marker is recognisable.
func TestEmbeddedEvents(t *testing.T) {
	t.Parallel()
	l := startLocal(t, "")
	client := l.s3Server().Client()
	ctx := context.Background()

	// 20 S3-native clients x 20 files in parallel.
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for c := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range 20 {
				body := fmt.Sprintf("client %d file %d", c, f)
				_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("ferry"),
					Key: aws.String(fmt.Sprintf("incoming/demo/load/c%02d/f%02d.txt", c, f)), Body: strings.NewReader(body)})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Written before each PUT returned: no waiting needed.
	events := readEvents(t, l.dir)
	seen := map[string]int{}
	for _, e := range events {
		if strings.HasPrefix(e.Detail.Object.Key, "incoming/demo/load/") {
			seen[e.Detail.Object.Key]++
			if e.DetailType != event.DetailTypeObjectCreated || e.Detail.Reason != event.ReasonPutObject || e.Detail.Object.Size == nil {
				t.Errorf("load event = %+v", e)
			}
		}
	}
	if len(seen) != 400 {
		t.Errorf("%d distinct keys have events, want 400", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s has %d events, want 1", k, n)
		}
	}
	for c := range 20 {
		for f := range 20 {
			out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ferry"),
				Key: aws.String(fmt.Sprintf("incoming/demo/load/c%02d/f%02d.txt", c, f))})
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			b.ReadFrom(out.Body)
			out.Body.Close()
			if b.String() != fmt.Sprintf("client %d file %d", c, f) {
				t.Errorf("c%02d/f%02d = %q", c, f, b.String())
			}
		}
	}

	// Through SFTP: a multipart-sized file is one CompleteMultipartUpload event; mkdir is a marker.
	sc := sftpClient(t, l.sftp, "demo", "demo")
	big := bytes.Repeat([]byte("0123456789abcdef"), (9<<20)/16)
	f, err := sc.Create("/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sc.Mkdir("/sub"); err != nil {
		t.Fatal(err)
	}

	// A client killed mid-upload: no object, no event.
	conn, err := dialSFTP(l.sftp, "demo", "demo")
	if err != nil {
		t.Fatal(err)
	}
	killed, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := killed.Create("/killed.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kf.Write(big); err != nil {
		t.Fatal(err)
	}
	// Closing the SSH connection sends no SFTP close for the open file: for the server it is a
	// dead client, whose upload must be aborted.
	conn.Close()
	time.Sleep(500 * time.Millisecond) // let the server notice and abort

	events = readEvents(t, l.dir)
	if got := eventsFor(events, "incoming/demo/big.bin"); len(got) != 1 || got[0].Detail.Reason != event.ReasonCompleteMultipartUpload ||
		*got[0].Detail.Object.Size != int64(len(big)) || !strings.HasSuffix(got[0].Detail.Object.ETag, "-2") {
		t.Errorf("events for big.bin = %+v, want one CompleteMultipartUpload of %d bytes", got, len(big))
	}
	if got := eventsFor(events, "incoming/demo/sub/"); len(got) != 1 || !got[0].Detail.Object.IsDirectoryMarker() {
		t.Errorf("events for the mkdir marker = %+v, want one directory marker", got)
	}
	if got := eventsFor(events, "incoming/demo/killed.bin"); len(got) != 0 {
		raw, _ := json.Marshal(got)
		t.Errorf("a killed upload produced events: %s", raw)
	}
	if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("ferry"), Key: aws.String("incoming/demo/killed.bin")}); err == nil {
		t.Error("a killed upload left an object")
	}

	// The gateway's own events say who uploaded: Completed with the SHA-256, Failed for the
	// killed client, Login Failed for a wrong password (never the password itself).
	if _, err := dialSFTP(l.sftp, "demo", "wrong-password"); err == nil {
		t.Fatal("wrong password accepted")
	}
	sum := sha256.Sum256(big)
	want := map[string]func(event.GatewayDetail) bool{
		event.DetailTypeTransferCompleted: func(d event.GatewayDetail) bool {
			return d.Key == "incoming/demo/big.bin" && d.User == "demo" && d.Protocol == "sftp" && d.Bucket == "ferry" &&
				d.Bytes == int64(len(big)) && d.SHA256 == hex.EncodeToString(sum[:]) && d.TransferID != "" && d.SessionID != ""
		},
		event.DetailTypeTransferFailed: func(d event.GatewayDetail) bool {
			return d.Key == "incoming/demo/killed.bin" && d.User == "demo" && d.FailureReason != "" && d.SHA256 == ""
		},
		event.DetailTypeLoginFailed: func(d event.GatewayDetail) bool { return d.User == "demo" && d.Protocol == "sftp" },
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(want) > 0 && time.Now().Before(deadline) {
		for _, g := range readGatewayEvents(t, l.dir) {
			if ok := want[g.DetailType]; ok != nil && ok(g.Detail) {
				delete(want, g.DetailType)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(want) > 0 {
		t.Errorf("gateway events missing after 10s: %v\nall: %+v", keys(want), readGatewayEvents(t, l.dir))
	}
	for _, g := range readGatewayEvents(t, l.dir) {
		if raw, _ := json.Marshal(g); strings.Contains(string(raw), "wrong-password") {
			t.Errorf("a password in an event: %s", raw)
		}
		if g.DetailType == event.DetailTypeTransferCompleted && g.Detail.Key == "incoming/demo/killed.bin" {
			t.Errorf("Transfer Completed for a killed upload: %+v", g)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func readGatewayEvents(t *testing.T, dir string) []event.Event[event.GatewayDetail] {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "data", "events", "seg-*.jsonl"))
	var out []event.Event[event.GatewayDetail]
	for _, s := range segs {
		data, _ := os.ReadFile(s)
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var e event.Event[event.GatewayDetail]
			if json.Unmarshal(line, &e) == nil && e.Source == event.SourceGateway {
				out = append(out, e)
			}
		}
	}
	return out
}
