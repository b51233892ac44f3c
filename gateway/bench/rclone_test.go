package bench

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// rcloneVersion is the peer the comparison runs against, installed by `make tools`.
const rcloneVersion = "v1.76.0"

// rcloneBinary finds rclone (the project's tools folder first) and checks it is the pinned
// version: a ratio against another version would be a different comparison.
func rcloneBinary(tb testing.TB) string {
	tb.Helper()
	bin := testtool.Path(tb, "rclone")
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		tb.Fatalf("%s version: %v", bin, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	// `go install` builds report "rclone v1.76.0-DEV"; releases "rclone v1.76.0".
	if v := strings.TrimPrefix(first, "rclone "); v != rcloneVersion && v != rcloneVersion+"-DEV" {
		tb.Fatalf("%s is %q, want rclone %s: run make tools", bin, first, rcloneVersion)
	}
	return bin
}

// startRclone runs `rclone serve <proto>` (sftp or ftp) over srv's bucket, rooted at rclone/,
// for user bench with benchPassword or, for sftp, the key of authorizedKeys, with rclone's
// defaults, as Ferry runs with its own: its VFS file cache is off (--vfs-cache-mode off), so
// uploads stream to S3 as Ferry's do, and its directory cache is on for 5 minutes. With
// noDirCache its directory cache is off too (--dir-cache-time 0), so a listing reads the
// bucket as Ferry's does: the server the LIST row is measured on. (Every other operation of
// such a server lists its folder again: 1000 uploads into one folder ran at 7 files/s.) It
// returns the listening address and the process id.
func startRclone(tb testing.TB, bin string, srv *s3test.Server, proto, authorizedKeys string, noDirCache bool) (string, int) {
	tb.Helper()
	dir := tb.TempDir()
	conf := filepath.Join(dir, "rclone.conf")
	write(tb, conf, "")
	addr := testtool.FreeAddr(tb)
	args := []string{"serve", proto, "vgw:" + srv.Bucket + "/rclone",
		"--addr", addr, "--user", "bench", "--pass", benchPassword, "--vfs-cache-mode", "off", "--log-level", "NOTICE"}
	if noDirCache {
		args = append(args, "--dir-cache-time", "0s", "--poll-interval", "0")
	}
	if proto == "sftp" {
		args = append(args, "--authorized-keys", authorizedKeys)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"HOME="+dir, "RCLONE_CONFIG="+conf, "RCLONE_CACHE_DIR="+filepath.Join(dir, "cache"),
		"RCLONE_CONFIG_VGW_TYPE=s3", "RCLONE_CONFIG_VGW_PROVIDER=Other",
		"RCLONE_CONFIG_VGW_ENDPOINT="+srv.Endpoint, "RCLONE_CONFIG_VGW_REGION="+srv.Region,
		"RCLONE_CONFIG_VGW_ACCESS_KEY_ID="+srv.AccessKey, "RCLONE_CONFIG_VGW_SECRET_ACCESS_KEY="+srv.Secret,
		"RCLONE_CONFIG_VGW_FORCE_PATH_STYLE=true")
	logs := &logbuf.Buffer{Max: 64 << 10}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			tb.Logf("rclone serve %s output:\n%s", proto, logs)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr, cmd.Process.Pid
		}
		select {
		case <-exited:
			tb.Fatalf("rclone serve %s exited:\n%s", proto, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("rclone serve %s did not listen on %s:\n%s", proto, addr, logs)
		}
	}
}
