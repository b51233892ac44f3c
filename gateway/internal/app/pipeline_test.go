package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

// TestEmbeddedPipeline is `make run`'s promise: a CSV uploaded over SFTP under incoming/<user>/
// becomes processed/<user>/<stem>.jsonl and a notification in the outbox, through the same
// handlers as the Lambdas; a CSV that fails validation lands in quarantine with a rejection
// notice; the same through an S3-native upload.
func TestEmbeddedPipeline(t *testing.T) {
	t.Parallel()
	routes, err := filepath.Abs("../../../configs/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := startLocal(t, routes)
	client := l.s3Server().Client()
	ctx := context.Background()
	sc := sftpClient(t, l.sftp, "demo", "demo")
	for name, body := range map[string]string{
		"/report.csv": "name,qty\nwidget,3\ngadget,5\n",
		"/bad.csv":    "name,qty\nwidget\n",
	} {
		f, err := sc.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte(body))
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("ferry"),
		Key: aws.String("incoming/demo/native.csv"), Body: strings.NewReader("a,b\n1,2\n")}); err != nil {
		t.Fatal(err)
	}

	get := func(key string) (string, bool) {
		out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ferry"), Key: aws.String(key)})
		if err != nil {
			return "", false
		}
		defer out.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(out.Body)
		return b.String(), true
	}
	want := map[string]string{
		"processed/demo/report.jsonl": `{"name":"widget","qty":"3"}` + "\n" + `{"name":"gadget","qty":"5"}` + "\n",
		"processed/demo/native.jsonl": `{"a":"1","b":"2"}` + "\n",
		"quarantine/demo/bad.csv":     "name,qty\nwidget\n",
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(want) > 0 && time.Now().Before(deadline) {
		for key, body := range want {
			if got, ok := get(key); ok {
				if got != body {
					t.Errorf("%s = %q, want %q", key, got, body)
				}
				delete(want, key)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(want) > 0 {
		t.Fatalf("not produced within 15s: %v\n%s", keys(want), l.logs)
	}
	if _, ok := get("processed/demo/bad.jsonl"); ok {
		t.Error("a rejected CSV also produced an output")
	}
	// One notification per input: processed x2, rejected x1.
	var outbox string
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(filepath.Join(l.dir, "data", "outbox.jsonl"))
		if outbox = string(data); strings.Count(outbox, "\n") >= 3 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would land now
	data, _ := os.ReadFile(filepath.Join(l.dir, "data", "outbox.jsonl"))
	outbox = string(data)
	if n := strings.Count(outbox, "\n"); n != 3 || strings.Count(outbox, `"status":"processed"`) != 2 ||
		strings.Count(outbox, `"status":"rejected"`) != 1 || !strings.Contains(outbox, `"dataset":"demo"`) {
		t.Errorf("outbox (%d lines):\n%s", n, outbox)
	}
	// The bus carries the arrivals and the outputs, never the ledger's own writes (the handlers
	// wrote some for each input above).
	created := map[string]bool{}
	err = bus.Follow(context.Background(), filepath.Join(l.dir, "data", "events"), false, time.Second, func(_ uint64, raw []byte) error {
		if e, err := event.DecodeS3(raw); err == nil {
			created[e.Detail.Object.Key] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key := range created {
		if strings.HasPrefix(key, ".ferry/") {
			t.Errorf("ledger write %s on the bus", key)
		}
	}
	for _, key := range []string{"incoming/demo/report.csv", "processed/demo/report.jsonl", "quarantine/demo/bad.csv"} {
		if !created[key] {
			t.Errorf("no event for %s on the bus; events for %v", key, keys(created))
		}
	}
}

// TestEmbeddedMultipartCopyByContent: a CSV over 8 MiB uploaded S3-natively in 5 MiB parts is
// processed; `aws s3 mv` of it (a multipart copy with 8 MiB parts: another etag, no transfer id)
// is recognised by its bytes and produces no second output and no second notice.
func TestEmbeddedMultipartCopyByContent(t *testing.T) {
	t.Parallel()
	awsBin := testtool.Path(t, "aws")
	routes, err := filepath.Abs("../../../configs/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := startLocal(t, routes)
	client := l.s3Server().Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var b strings.Builder
	b.WriteString("id,payload\n")
	for i := 0; b.Len() < 10<<20; i++ {
		fmt.Fprintf(&b, "%d,%s\n", i, strings.Repeat("y", 100))
	}
	body := b.String()
	mpu, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("ferry"), Key: aws.String("incoming/demo/big.csv")})
	if err != nil {
		t.Fatal(err)
	}
	var parts []s3types.CompletedPart
	for i, n := 0, int32(1); i < len(body); i, n = i+5<<20, n+1 {
		chunk := body[i:min(i+5<<20, len(body))]
		up, err := client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("ferry"), Key: aws.String("incoming/demo/big.csv"),
			UploadId: mpu.UploadId, PartNumber: aws.Int32(n), Body: strings.NewReader(chunk)})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, s3types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(n)})
	}
	if _, err := client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("ferry"), Key: aws.String("incoming/demo/big.csv"),
		UploadId: mpu.UploadId, MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		t.Fatal(err)
	}
	outbox := filepath.Join(l.dir, "data", "outbox.jsonl")
	testtool.Eventually(t, 30*time.Second, "the upload's notice", func() bool { return countLines(outbox) == 1 })

	cli := exec.CommandContext(ctx, awsBin, "--endpoint-url", "http://"+l.s3, "s3", "mv",
		"s3://ferry/incoming/demo/big.csv", "s3://ferry/incoming/demo/moved.csv")
	cli.Env = cliEnv(t)
	if out, err := cli.CombinedOutput(); err != nil {
		t.Fatalf("aws s3 mv: %v\n%s", err, out)
	}
	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("ferry"), Key: aws.String("incoming/demo/moved.csv")})
	if err != nil {
		t.Fatal(err)
	}
	if etag := aws.ToString(head.ETag); !strings.HasSuffix(etag, `-2"`) {
		t.Fatalf("moved object's etag %s: not the CLI's 2-part copy of a 3-part upload", etag)
	}
	testtool.Eventually(t, 30*time.Second, "the copy's event to be handled", func() bool {
		return strings.Contains(l.logs.String(), "copy of content already processed")
	})
	time.Sleep(300 * time.Millisecond) // a second notice would land now
	if n := countLines(outbox); n != 1 {
		data, _ := os.ReadFile(outbox)
		t.Errorf("%d notices, want 1:\n%s", n, data)
	}
	if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("ferry"), Key: aws.String("processed/demo/moved.jsonl")}); err == nil {
		t.Error("the moved copy was processed again")
	}
}

// cliEnv is the environment of an `aws` command against the embedded endpoint: its credentials,
// and no shared config or credentials of the machine.
func cliEnv(t *testing.T) []string {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	writeFile(t, cfg, "[default]\nregion = us-east-1\n")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, "AWS_ACCESS_KEY_ID=ferry", "AWS_SECRET_ACCESS_KEY=ferrysecret", "AWS_CONFIG_FILE="+cfg,
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"), "AWS_PAGER=")
}

func countLines(file string) int {
	data, _ := os.ReadFile(file)
	return strings.Count(string(data), "\n")
}

// TestEmbeddedNoticeLinks: with the shipped routes' download_links example switched on, the
// outbox shows each protocol's message — the e-mail with a link to the output, the JSON for
// machines — and the link opens the output on the embedded endpoint with no credentials.
func TestEmbeddedNoticeLinks(t *testing.T) {
	t.Parallel()
	shipped, err := os.ReadFile("../../../configs/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(shipped), "    # download_links:\n    #   expires: 24h\n", "    download_links:\n      expires: 24h\n", 1)
	if src == string(shipped) {
		t.Fatal("the shipped routes no longer have the download_links example")
	}
	routes := filepath.Join(t.TempDir(), "pipeline.yaml")
	writeFile(t, routes, src)
	l := startLocal(t, routes)
	sc := sftpClient(t, l.sftp, "demo", "demo")
	f, err := sc.Create("/links.csv")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("a,b\n1,2\n"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	outbox := filepath.Join(l.dir, "data", "outbox.jsonl")
	testtool.Eventually(t, 20*time.Second, "the notice", func() bool { return countLines(outbox) == 1 })
	data, err := os.ReadFile(outbox)
	if err != nil {
		t.Fatal(err)
	}
	var entry struct {
		Subject          string
		MessageStructure string `json:"message_structure"`
		Deliveries       map[string]string
	}
	if err := json.Unmarshal(data, &entry); err != nil {
		t.Fatal(err)
	}
	var notice struct {
		Files []struct{ Outputs []struct{ Key, Link string } }
	}
	if err := json.Unmarshal([]byte(entry.Deliveries["https"]), &notice); err != nil || len(notice.Files) != 1 || len(notice.Files[0].Outputs) != 1 {
		t.Fatalf("https delivery %q: %v", entry.Deliveries["https"], err)
	}
	out := notice.Files[0].Outputs[0]
	if entry.MessageStructure != "json" || entry.Subject != "[demo] Processed: links.csv from demo" ||
		!strings.Contains(entry.Deliveries["email"], "Download:  "+out.Link) || entry.Deliveries["sqs"] != entry.Deliveries["https"] ||
		entry.Deliveries["sms"] != "links.csv processed: 1 record." {
		t.Errorf("outbox entry %+v", entry)
	}
	resp, err := http.Get(out.Link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != `{"a":"1","b":"2"}`+"\n" {
		t.Errorf("GET %s: %s %q", out.Link, resp.Status, body)
	}
}
