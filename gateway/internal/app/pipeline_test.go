package app_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestEmbeddedPipeline is `make run`'s promise: a CSV uploaded over SFTP under incoming/<user>/
// becomes processed/<user>/<stem>.jsonl and a notification in the outbox, through the same
// handlers as the Lambdas; a CSV that fails validation lands in quarantine with a rejection
// notice; the same through an S3-native upload.
func TestEmbeddedPipeline(t *testing.T) {
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
}
