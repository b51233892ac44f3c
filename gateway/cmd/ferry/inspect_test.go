package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/app"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/handler"
	"github.com/ferrygw/ferry/pipeline/inspect"
	"github.com/ferrygw/ferry/pipeline/ledger"
	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/route"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// embeddedSystem runs `ferry serve` in-process on the embedded default (S3 endpoint, bus,
// pipeline with routes, outbox) with SFTP, and returns its config file.
type embeddedSystem struct {
	dir, cfg, sftp, s3 string
	logs               *logbuf.Buffer
}

// testKEK is the key-encryption key of the test systems' users' S3 secrets.
const testKEK = "q4ZTvUOj2vx1i0xkSpSqcTW8O2mclQ4YW7cvIL8GjVQ="

// startEmbedded runs the system with routes; usersYAML is the users file's content, or "" to
// keep the users file in the embedded endpoint itself (s3://ferry/.ferry/users.yaml, not
// written yet).
func startEmbedded(t *testing.T, routes string, usersYAML string) *embeddedSystem {
	t.Helper()
	dir := t.TempDir()
	e := &embeddedSystem{dir: dir, cfg: filepath.Join(dir, "ferry.yaml"), sftp: testtool.FreeAddr(t), s3: testtool.FreeAddr(t), logs: &logbuf.Buffer{}}
	routesAbs, err := filepath.Abs(routes)
	if err != nil {
		t.Fatal(err)
	}
	usersFile := "s3://ferry/.ferry/users.yaml"
	if usersYAML != "" {
		usersFile = "users.yaml"
		write(t, filepath.Join(dir, "users.yaml"), usersYAML)
	}
	write(t, e.cfg, fmt.Sprintf(`listen:
  sftp: %q
  metrics: ""
storage:
  s3:
    bucket: ferry
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: %q
users_poll_interval: 1s
embedded:
  s3:
    listen: %q
    data_dir: data/s3
    access_key: ferry
    secret: ferrysecret
    key_encryption_key: %q
  events:
    dir: data/events
  notifications:
    outbox: data/outbox.jsonl
  pipeline:
    routes: %q
`, e.sftp, usersFile, e.s3, testKEK, routesAbs))
	cfg, err := config.Load(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(e.logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	for _, addr := range []string{e.sftp, e.s3} {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not listening:\n%s", addr, e.logs)
			}
		}
	}
	return e
}

func (e *embeddedSystem) sftpPut(t *testing.T, user, password string, files map[string]string) {
	t.Helper()
	conn, err := ssh.Dial("tcp", e.sftp, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, body := range files {
		if dir := filepath.Dir(name); dir != "/" {
			_ = c.MkdirAll(dir)
		}
		f, err := c.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// outboxMessageIDs maps each outbox line's subject to its message id.
func (e *embeddedSystem) outboxMessageIDs(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(e.dir, "data", "outbox.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Subject   string `json:"subject"`
			MessageID string `json:"message_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		out[line.Subject] = line.MessageID
	}
	return out
}

const demoUser = "users:\n  - name: demo\n    password_hash: %q\n    home: incoming/demo/\n    permissions: [\"*\"]\n"

// TestTraceAndStatusEmbedded: `ferry status` and `ferry trace` against a running embedded
// default, files uploaded over SFTP and the S3 API, in every state.
func TestTraceAndStatusEmbedded(t *testing.T) {
	e := startEmbedded(t, "testdata/inspect-routes.yaml", fmt.Sprintf(demoUser, hash(t, "demo")))
	start := time.Now().Add(-time.Second)
	e.sftpPut(t, "demo", "demo", map[string]string{
		"/report.csv":     "name,qty\nwidget,3\ngadget,5\n",
		"/bad.csv":        "name,qty\nwidget\n",
		"/notes.txt":      "hello",
		"/batch/1.csv":    "a,b\n1,2\n",
		"/verified/v.csv": "a,b\n1,2\n",
	})
	client, err := s3store.NewClient(context.Background(), s3store.ClientConfig{Endpoint: "http://" + e.s3, Region: "us-east-1",
		PathStyle: true, AccessKey: "ferry", Secret: "ferrysecret"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("ferry"),
		Key: aws.String("incoming/demo/native.csv"), Body: strings.NewReader("a,b\n1,2\n")}); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{
		"incoming/demo/report.csv":     "processed (2 records), notified",
		"incoming/demo/bad.csv":        "rejected (line 2), notified",
		"incoming/demo/native.csv":     "processed (1 records), notified",
		"incoming/demo/notes.txt":      "received (no route)",
		"incoming/demo/batch/1.csv":    "waiting for marker *.done",
		"incoming/demo/verified/v.csv": "waiting for sidecar v.csv.sha256",
	}
	var files []inspect.File
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := ferry(t, "", "status", "--config", e.cfg, "--since", start.Format(time.RFC3339), "--json")
		if r.code != 0 {
			t.Fatalf("status: %d %s", r.code, r.stderr)
		}
		files = nil
		if err := json.Unmarshal([]byte(r.stdout), &files); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r.stdout)
		}
		done := 0
		for _, f := range files {
			if want[f.Key] == f.Describe() {
				done++
			}
		}
		if done == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after 20s: %+v\n%s", files, e.logs)
		}
	}
	if len(files) != len(want) {
		t.Errorf("%d files listed, want %d: %+v", len(files), len(want), files)
	}
	var report inspect.File
	for _, f := range files {
		if f.Key == "incoming/demo/report.csv" {
			report = f
		}
	}
	if report.User != "demo" || report.Protocol != "sftp" || report.TransferID == "" || report.MessageID == "" {
		t.Errorf("report.csv: %+v", report)
	}

	table := ferry(t, "", "status", "--config", e.cfg)
	if table.code != 0 || !strings.HasPrefix(table.stdout, "RECEIVED") || strings.Count(table.stdout, "\n") != len(want)+1 {
		t.Errorf("status table (%d): %s %s", table.code, table.stdout, table.stderr)
	}
	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--user", "nobody"}, "no files received since", 0},
		{[]string{"--dataset", "demo", "--user", "demo"}, "incoming/demo/report.csv", 0},
		{[]string{"--since", "yesterday-ish"}, "", 2},
	} {
		r := ferry(t, "", append([]string{"status", "--config", e.cfg}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stdout, c.want) {
			t.Errorf("status %v: %d %q %q", c.args, r.code, r.stdout, r.stderr)
		}
	}

	ids := e.outboxMessageIDs(t)
	mid := ids["[demo] Processed: report.csv from demo"]
	if mid == "" || mid != report.MessageID {
		t.Errorf("outbox message id %q, status says %q (%v)", mid, report.MessageID, ids)
	}
	tr := ferry(t, "", "trace", "--config", e.cfg, "incoming/demo/report.csv")
	if tr.code != 0 {
		t.Fatalf("trace: %d %s", tr.code, tr.stderr)
	}
	for _, want := range []string{
		"File       s3://ferry/incoming/demo/report.csv",
		"by demo over SFTP from 127.0.0.1:", "transfer " + report.TransferID,
		"SHA-256    ", "s3        Object Created by PutObject, 27 B",
		"gateway   Transfer Completed: demo over sftp", "record    received by the transform: route demo-csv, dataset demo",
		"record    processed: 1 output, 2 records", "pipeline  File Processed by route demo-csv for dataset demo",
		"record    notice sent to dataset demo, message " + mid,
		"Outcome    processed by route demo-csv (dataset demo)", "output s3://ferry/processed/demo/report.jsonl",
		"message id " + mid,
	} {
		if !strings.Contains(tr.stdout, want) {
			t.Errorf("trace lacks %q:\n%s", want, tr.stdout)
		}
	}
	if i, j := strings.Index(tr.stdout, "Object Created"), strings.Index(tr.stdout, "notice sent"); i < 0 || j < i {
		t.Errorf("events out of order:\n%s", tr.stdout)
	}
	byID := ferry(t, "", "trace", "--config", e.cfg, report.TransferID)
	if byID.code != 0 || byID.stdout != tr.stdout {
		t.Errorf("trace by transfer id differs (%d, %s):\n%s", byID.code, byID.stderr, byID.stdout)
	}
	bad := ferry(t, "", "trace", "--config", e.cfg, "--json", "s3://ferry/incoming/demo/bad.csv")
	var stories []inspect.Story
	if err := json.Unmarshal([]byte(bad.stdout), &stories); err != nil || len(stories) != 1 {
		t.Fatalf("trace --json: %v %s", err, bad.stdout)
	}
	if o := stories[0].Outcome; o == nil || o.State != "rejected" || o.Line != 2 || o.Quarantine != "quarantine/demo/bad.csv" || stories[0].Notice == nil {
		t.Errorf("rejected story: %+v", stories[0])
	}
	native := ferry(t, "", "trace", "--config", e.cfg, "incoming/demo/native.csv")
	if !strings.Contains(native.stdout, "by demo (from the key: no gateway metadata, an S3-native upload)") {
		t.Errorf("native upload's story:\n%s", native.stdout)
	}
	if r := ferry(t, "", "trace", "--config", e.cfg, "incoming/demo/none.csv"); r.code != 1 || !strings.Contains(r.stderr, "no such file or transfer") {
		t.Errorf("trace of nothing: %d %q", r.code, r.stderr)
	}
}

// TestTraceAndStatusOnAWS: the commands as an operator runs them against a deployment on AWS —
// no config file, --bucket and the SDK's usual environment — here versitygw as S3, with the
// transform and notify Lambdas' handlers having processed the files.
func TestTraceAndStatusOnAWS(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	client := srv.Client()
	routes, err := route.Load("../../../configs/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sink, err := notify.NewLocalSink(notify.LocalConfig{Outbox: filepath.Join(t.TempDir(), "outbox.jsonl")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nh, err := handler.NewNotify(handler.NotifyConfig{Publisher: sink, Ledger: ledger.New(client, srv.Bucket, "")})
	if err != nil {
		t.Fatal(err)
	}
	th, err := handler.NewTransform(handler.TransformConfig{S3: client, Routes: routes, Ledger: ledger.New(client, srv.Bucket, ""),
		Events: emitterFunc(func(ctx context.Context, evs ...event.Envelope) error {
			for _, ev := range evs {
				raw, _ := json.Marshal(ev)
				if err := nh.Handle(ctx, raw); err != nil {
					return err
				}
			}
			return nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range []struct{ key, body, user string }{
		{"incoming/alice/sales.csv", "a,b\n1,2\n3,4\n", "alice"},
		{"incoming/bob/oops.csv", "a,b\n1\n", ""},
	} {
		var meta map[string]string
		if f.user != "" {
			meta = map[string]string{"ferry-user": f.user, "ferry-protocol": "ftps", "ferry-transfer-id": "feedc0de00000001"}
		}
		out, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(f.key), Body: strings.NewReader(f.body), Metadata: meta})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := event.NewObjectCreated(event.S3Change{Account: "111122223333", Region: "us-east-1", Time: time.Now(), Bucket: srv.Bucket, Key: f.key,
			Size: int64(len(f.body)), ETag: strings.Trim(aws.ToString(out.ETag), `"`), Sequencer: fmt.Sprintf("%016X", i+1),
			Requester: "111122223333", Reason: event.ReasonPutObject})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(ev)
		if err := th.Handle(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}

	home := t.TempDir()
	t.Chdir(home) // no ferry.yaml here: the commands take --bucket and the SDK's environment
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.Secret, "AWS_REGION": "us-east-1",
		"AWS_ENDPOINT_URL_S3": srv.Endpoint, "AWS_CONFIG_FILE": filepath.Join(home, "none"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "none"), "AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	st := ferry(t, "", "status", "--bucket", srv.Bucket, "--since", "1h")
	if st.code != 0 {
		t.Fatalf("status: %d %s", st.code, st.stderr)
	}
	for _, want := range []string{"alice  ftps", "incoming/alice/sales.csv", "processed (2 records), notified",
		"bob    -", "incoming/bob/oops.csv", "rejected (line 2), notified"} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, st.stdout)
		}
	}
	tr := ferry(t, "", "trace", "--bucket", srv.Bucket, "feedc0de00000001")
	for _, want := range []string{"File       s3://" + srv.Bucket + "/incoming/alice/sales.csv", "by alice over FTPS, transfer feedc0de00000001",
		"record    received by the transform: route demo-csv", "output s3://" + srv.Bucket + "/processed/alice/sales.jsonl", "message id "} {
		if !strings.Contains(tr.stdout, want) {
			t.Errorf("trace lacks %q (%d %s):\n%s", want, tr.code, tr.stderr, tr.stdout)
		}
	}
	if r := ferry(t, "", "status"); r.code != 1 || !strings.Contains(r.stderr, "--bucket") {
		t.Errorf("status without config nor --bucket: %d %q", r.code, r.stderr)
	}
}

type emitterFunc func(ctx context.Context, evs ...event.Envelope) error

func (f emitterFunc) Put(ctx context.Context, evs ...event.Envelope) error { return f(ctx, evs...) }
