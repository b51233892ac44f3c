package app_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/ferryproc"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// A gateway killed with kill -9 in the middle of a multipart upload leaves the upload pending
// (its parts stored, 8 MiB here). The next start finds it in the upload journal, once the dead
// process's heartbeat is older than recovery.stale_after, aborts it and sends Transfer Failed
// with the uploader, the key and the reason.
func TestKilledGatewayUploadIsRecovered(t *testing.T) {
	t.Parallel()
	bin := ferryproc.Build(t)
	dir := t.TempDir()
	hash, err := users.HashPassword("demo")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "users.yaml"), fmt.Sprintf("users:\n  - name: demo\n    password_hash: %q\n    home: incoming/demo/\n    permissions: [\"*\"]\n", hash))
	sftpAddr, s3Addr := testtool.FreeAddr(t), testtool.FreeAddr(t)
	cfg := filepath.Join(dir, "ferry.yaml")
	writeFile(t, cfg, fmt.Sprintf(`listen:
  sftp: %q
  metrics: ""
storage:
  s3:
    bucket: ferry
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
embedded:
  s3: {listen: %q, data_dir: data/s3, access_key: ferry, secret: ferrysecret}
  events: {dir: data/events}
recovery:
  heartbeat: 1s
  stale_after: 3s
memory_limit: 0
`, sftpAddr, s3Addr))
	local := &s3test.Server{Endpoint: "http://" + s3Addr, Region: "us-east-1", AccessKey: "ferry", Secret: "ferrysecret", Bucket: "ferry"}
	pending := func() []string {
		out, err := local.Client().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String("ferry")})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, u := range out.Uploads {
			keys = append(keys, aws.ToString(u.Key))
		}
		return keys
	}

	first := ferryproc.Start(t, bin, cfg)
	first.WaitListening(t, sftpAddr, s3Addr)
	sc := sftpClient(t, sftpAddr, "demo", "demo")
	f, err := sc.Create("/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte("x"), 8<<20)); err != nil { // one 5 MiB part sent
		t.Fatal(err)
	}
	testtool.Eventually(t, 10*time.Second, "the multipart upload to start", func() bool { return len(pending()) == 1 })
	time.Sleep(1500 * time.Millisecond) // a heartbeat or two
	// As `kill -9` does: no drain, no cleanup of any kind.
	if err := first.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	sc.Close()

	uploads, _ := filepath.Glob(filepath.Join(dir, "data", "s3", "uploads", "*", "part-*"))
	if len(uploads) == 0 {
		t.Fatal("the killed gateway left no pending upload to recover: the test does not reproduce the crash")
	}
	t.Logf("after kill -9: %d part file(s) of a pending upload on disk", len(uploads))

	second := ferryproc.Start(t, bin, cfg)
	second.WaitListening(t, sftpAddr, s3Addr)
	testtool.Eventually(t, 20*time.Second, "the pending upload to be aborted", func() bool { return len(pending()) == 0 })
	var failed []event.Event[event.GatewayDetail]
	testtool.Eventually(t, 10*time.Second, "Transfer Failed", func() bool {
		failed = nil
		for _, e := range readGatewayEvents(t, dir) {
			if e.DetailType == event.DetailTypeTransferFailed {
				failed = append(failed, e)
			}
		}
		return len(failed) > 0
	})
	d := failed[0].Detail
	if len(failed) != 1 || d.User != "demo" || d.Key != "incoming/demo/big.bin" || d.Bucket != "ferry" || d.Protocol != "sftp" ||
		d.TransferID == "" || d.Bytes != 5<<20 || !strings.Contains(d.FailureReason, "stopped during the upload") {
		t.Errorf("Transfer Failed events: %+v", failed)
	}
	if parts, _ := filepath.Glob(filepath.Join(dir, "data", "s3", "uploads", "*", "part-*")); len(parts) != 0 {
		t.Errorf("part files left: %v", parts)
	}
	if !strings.Contains(second.Log.String(), "aborted the upload of a replica gone") {
		t.Errorf("the recovery is not logged:\n%s", second.Log)
	}
	// The journal is clean again: no record, and the dead process's heartbeat is gone.
	testtool.Eventually(t, 5*time.Second, "the journal to be clean", func() bool {
		out, err := local.Client().ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String("ferry"), Prefix: aws.String(".ferry/uploads/")})
		return err == nil && len(out.Contents) == 0
	})
}

// Several replicas share a bucket. A replica that starts while another has a multipart upload
// in progress (its client pausing for three times stale_after, so the upload makes no progress
// at all meanwhile) leaves that upload alone: the live replica's heartbeat keeps it owned, and
// the upload completes afterwards.
func TestLiveReplicaUploadIsNotRecovered(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	hash, err := users.HashPassword("demo")
	if err != nil {
		t.Fatal(err)
	}
	replica := func() (string, *logbuf.Buffer) {
		dir, addr := t.TempDir(), testtool.FreeAddr(t)
		writeFile(t, filepath.Join(dir, "users.yaml"), fmt.Sprintf("users:\n  - name: demo\n    password_hash: %q\n    home: incoming/demo/\n    permissions: [\"*\"]\n", hash))
		logs := runConfig(t, dir, fmt.Sprintf(`listen:
  sftp: %q
  metrics: ""
storage:
  s3: {bucket: %s, endpoint: %s, region: %s, path_style: true}
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
recovery:
  heartbeat: 1s
  stale_after: 3s
memory_limit: 0
`, addr, srv.Bucket, srv.Endpoint, srv.Region), addr)
		return addr, logs
	}
	pending := func() int {
		out, err := srv.Client().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket)})
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Uploads)
	}

	a, _ := replica()
	sc := sftpClient(t, a, "demo", "demo")
	f, err := sc.Create("/long.bin")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), (11<<20)/16)
	if _, err := f.Write(data[:6<<20]); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 10*time.Second, "the multipart upload to start", func() bool { return pending() == 1 })

	_, blogs := replica()
	time.Sleep(9 * time.Second) // three stale_after periods; the other replica scans every second
	if n := pending(); n != 1 {
		t.Fatalf("%d multipart uploads pending after another replica started, want the live one", n)
	}
	if strings.Contains(blogs.String(), "aborted the upload") {
		t.Fatalf("the new replica aborted a live upload:\n%s", blogs)
	}
	if _, err := f.Write(data[6<<20:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("the live upload failed: %v", err)
	}
	out, err := srv.Client().HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("incoming/demo/long.bin")})
	if err != nil || aws.ToInt64(out.ContentLength) != int64(len(data)) {
		t.Fatalf("the object after the live upload: %v, %v", out, err)
	}
	if n := pending(); n != 0 {
		t.Errorf("%d multipart uploads pending after the upload completed", n)
	}
}
