package app_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// The transfer memory budget is one for both protocols: while alice's SFTP upload holds her
// share, her FTP upload waits limits.transfer_memory_wait and fails as busy (552, the reply
// ftpserverlib has for a resource limit; no object); once the SFTP upload is committed the same STOR goes through. The wait and the
// refusal show in the metrics, and so do uploads refused by limits.uploads_per_session.
func TestTransferMemorySharedAcrossProtocols(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	dir := t.TempDir()
	hash, err := users.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir+"/users.yaml", fmt.Sprintf("users:\n  - name: alice\n    password_hash: %q\n    home: alice/\n    permissions: [\"*\"]\n", hash))
	sftpAddr, ftpAddr, metrics := testtool.FreeAddr(t), testtool.FreeAddr(t), testtool.FreeAddr(t)
	// alice's share holds one 5 MiB part and a 4 MiB read-ahead: a second part must wait.
	runConfig(t, dir, fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
  metrics: %q
storage:
  s3:
    bucket: %s
    endpoint: %s
    region: %s
    path_style: true
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
ftp:
  passive_ports: ""
  tls:
    mode: optional
    dev_self_signed: true
limits:
  transfer_memory: 32MiB
  transfer_memory_per_user: 9MiB
  transfer_memory_wait: 500ms
  uploads_per_session: 1
`, sftpAddr, ftpAddr, metrics, srv.Bucket, srv.Endpoint, srv.Region), sftpAddr, ftpAddr, metrics)

	sc := sftpClient(t, sftpAddr, "alice", "pw")
	held, err := sc.Create("/held.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held.Write([]byte("holds a part")); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Create("/second.bin"); err == nil {
		t.Fatal("a second upload in the session was allowed with uploads_per_session: 1")
	}

	fc, err := ftp.Dial(ftpAddr, ftp.DialWithTimeout(10*time.Second),
		ftp.DialWithExplicitTLS(&tls.Config{InsecureSkipVerify: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Quit()
	if err := fc.Login("alice", "pw"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = fc.Stor("busy.bin", bytes.NewReader([]byte("waits for memory")))
	if err == nil || !strings.Contains(err.Error(), "Server busy") || !strings.HasPrefix(err.Error(), "552") {
		t.Fatalf("FTP upload without memory: %v, want a 552 busy reply", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("refused after %v, without waiting", d)
	}
	if _, err := getObject(srv, "alice/busy.bin"); err == nil {
		t.Fatal("the refused FTP upload left an object")
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fc.Stor("after.bin", bytes.NewReader([]byte("now there is memory"))); err != nil {
		t.Fatalf("FTP upload once memory came back: %v", err)
	}
	for key, want := range map[string]string{"alice/held.bin": "holds a part", "alice/after.bin": "now there is memory"} {
		got, err := getObject(srv, key)
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", key, got, err)
		}
	}
	_, body := httpGet(t, "http://"+metrics+"/metrics")
	for series, min := range map[string]int{
		"ferry_transfer_memory_waits_total":                                       1,
		"ferry_transfer_memory_refusals_total":                                    1,
		`ferry_limit_refusals_total{limit="uploads_per_session",protocol="sftp"}`: 1,
		"ferry_transfer_memory_limit_bytes":                                       32 << 20,
	} {
		if got := counter(body, series); got < min {
			t.Errorf("%s = %d, want at least %d", series, got, min)
		}
	}
	if got := counter(body, "ferry_transfer_memory_reserved_bytes"); got != 0 {
		t.Errorf("ferry_transfer_memory_reserved_bytes = %d with no transfer open", got)
	}
}
