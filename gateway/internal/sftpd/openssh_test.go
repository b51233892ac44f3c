package sftpd_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// openSSH runs OpenSSH's sftp against a server.
type openSSH struct {
	bin     string
	keyFile string
	port    int
	user    string
	dir     string // local working directory
}

func newOpenSSH(t *testing.T, e *env, user string) *openSSH {
	t.Helper()
	bin := testtool.Path(t, "sftp")
	dir := t.TempDir()
	block, err := ssh.MarshalPrivateKey(e.priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return &openSSH{bin: bin, keyFile: keyFile, port: e.srv.Port, user: user, dir: dir}
}

func (o *openSSH) cmd(ctx context.Context, batch string, extra ...string) *exec.Cmd {
	args := []string{"-b", "-", "-P", strconv.Itoa(o.port), "-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-i", o.keyFile}
	args = append(args, extra...)
	args = append(args, o.user+"@127.0.0.1")
	cmd := exec.CommandContext(ctx, o.bin, args...)
	cmd.Dir = o.dir
	cmd.Stdin = strings.NewReader(batch)
	return cmd
}

// run executes a batch and returns its combined output and exit code.
func (o *openSSH) run(t *testing.T, batch string, extra ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := o.cmd(ctx, batch, extra...).CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("sftp: %v", err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// mustRun fails the test unless the batch exits 0.
func (o *openSSH) mustRun(t *testing.T, batch string, extra ...string) string {
	t.Helper()
	out, code := o.run(t, batch, extra...)
	if code != 0 {
		t.Fatalf("sftp batch exited %d:\n%s\nbatch:\n%s", code, out, batch)
	}
	return out
}

func (o *openSSH) writeLocal(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(o.dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (o *openSSH) readLocal(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(o.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenSSHPutGet(t *testing.T) {
	e := newEnv(t)
	o := newOpenSSH(t, e, "alice")
	sizes := []int{0, 1, 32768, 261120, 261121, 5<<20 + 1}
	var batch strings.Builder
	batch.WriteString("mkdir /up\n")
	want := map[string][]byte{}
	for _, n := range sizes {
		name := fmt.Sprintf("f%d.bin", n)
		want[name] = randomBytes(uint64(n)+9, n)
		o.writeLocal(t, name, want[name])
		fmt.Fprintf(&batch, "put %s /up/%s\n", name, name)
	}
	// /up exists now: mkdir fails, and the leading "-" makes the batch ignore just that error.
	batch.WriteString("-mkdir /up\n")
	out := o.mustRun(t, batch.String())
	if !strings.Contains(out, `remote mkdir "/up": Failure`) {
		t.Fatalf("mkdir of an existing dir did not fail:\n%s", out)
	}
	batch.Reset()
	for name := range want {
		fmt.Fprintf(&batch, "get /up/%s back-%s\n", name, name)
	}
	o.mustRun(t, batch.String())
	for name, data := range want {
		stored, err := e.mem.ReadFile("/up/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if sha(stored) != sha(data) {
			t.Errorf("%s: stored sha256 differs (%d bytes, want %d)", name, len(stored), len(data))
		}
		if got := o.readLocal(t, "back-"+name); sha(got) != sha(data) {
			t.Errorf("%s: downloaded sha256 differs", name)
		}
	}
}

// -R 64 and large buffers keep many writes in flight: the pkg/sftp workers deliver them out
// of order and the reorder window must put them back together.
func TestOpenSSHManyRequestsInFlight(t *testing.T) {
	e := newEnv(t)
	o := newOpenSSH(t, e, "alice")
	data := randomBytes(77, 24<<20+3)
	o.writeLocal(t, "big.bin", data)
	o.mustRun(t, "put big.bin /big.bin\nget /big.bin back.bin\n", "-R", "64", "-B", "261120")
	stored, _ := e.mem.ReadFile("/big.bin")
	if sha(stored) != sha(data) {
		t.Fatalf("stored sha256 differs (%d bytes)", len(stored))
	}
	if got := o.readLocal(t, "back.bin"); sha(got) != sha(data) {
		t.Fatal("downloaded sha256 differs")
	}
}

func TestOpenSSHPreserveAndCommands(t *testing.T) {
	e := newEnv(t)
	o := newOpenSSH(t, e, "alice")
	o.writeLocal(t, "report.csv", []byte("a,b\n1,2\n"))
	mt := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	local := filepath.Join(o.dir, "report.csv")
	if err := os.Chmod(local, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(local, mt, mt); err != nil {
		t.Fatal(err)
	}
	out := o.mustRun(t, strings.Join([]string{
		"mkdir /in",
		"put -p report.csv /in/report.csv",
		"chmod 600 /in/report.csv",
		"chmod 640 /in/report.csv",
		"rename /in/report.csv /in/final.csv",
		"mkdir /in/tmp",
		"rmdir /in/tmp",
		"ls -l /in",
		"get -p /in/final.csv copy.csv",
		"rm /in/final.csv",
		"ls /",
	}, "\n")+"\n")
	if !strings.Contains(out, "final.csv") {
		t.Fatalf("listing lacks the renamed file:\n%s", out)
	}
	// put -p sent fsetstat before close: the attributes arrived with the commit.
	if got := o.readLocal(t, "copy.csv"); string(got) != "a,b\n1,2\n" {
		t.Fatalf("copy = %q", got)
	}
	st, err := os.Stat(filepath.Join(o.dir, "copy.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if !st.ModTime().Equal(mt) || st.Mode().Perm() != 0o640 {
		t.Fatalf("get -p gave mtime %v mode %v, want %v 0640", st.ModTime(), st.Mode().Perm(), mt)
	}
	if files := e.mem.Files(); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
}

func TestOpenSSHExitCodes(t *testing.T) {
	e := newEnv(t)
	o := newOpenSSH(t, e, "alice")
	for _, batch := range []string{
		"get /missing.txt\n",
		"rm /missing.txt\n",
		"rmdir /missing\n",
		"cd /missing\n",
	} {
		if out, code := o.run(t, batch); code == 0 {
			t.Errorf("batch %q exited 0:\n%s", batch, out)
		}
	}
	// A failed login is a failure too.
	bad := *o
	bad.user = "nobody"
	if out, code := bad.run(t, "ls\n"); code == 0 {
		t.Errorf("login as unknown user exited 0:\n%s", out)
	}
}

// reput (resume) on an object is refused cleanly: the client fails and the object is intact.
func TestOpenSSHResumeRefused(t *testing.T) {
	e := newEnv(t)
	o := newOpenSSH(t, e, "alice")
	full := randomBytes(5, 1<<20)
	if err := e.mem.WriteFile("/part.bin", full[:300000]); err != nil {
		t.Fatal(err)
	}
	o.writeLocal(t, "part.bin", full)
	if out, code := o.run(t, "reput part.bin /part.bin\n"); code == 0 {
		t.Fatalf("reput exited 0:\n%s", out)
	}
	if got, _ := e.mem.ReadFile("/part.bin"); !bytes.Equal(got, full[:300000]) {
		t.Fatalf("object changed by refused resume: %d bytes", len(got))
	}
	// A plain put replaces it.
	o.mustRun(t, "put part.bin /part.bin\n")
	if got, _ := e.mem.ReadFile("/part.bin"); !bytes.Equal(got, full) {
		t.Fatal("put after refused reput stored wrong bytes")
	}
}

// An sftp process killed mid-upload leaves no object and no open storage upload.
func TestOpenSSHKilledMidUpload(t *testing.T) {
	e := newEnv(t)
	o := newOpenSSH(t, e, "alice")
	o.writeLocal(t, "big.bin", randomBytes(6, 32<<20))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// -l limits the rate (Kbit/s) so the kill lands mid-transfer.
	cmd := o.cmd(ctx, "put big.bin /big.bin\n", "-l", "16000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testtool.Eventually(t, 20*time.Second, "upload to start", func() bool { return e.mem.Pending() == 1 })
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	testtool.Eventually(t, 10*time.Second, "upload to be aborted", func() bool { return e.mem.Pending() == 0 })
	if files := e.mem.Files(); len(files) != 0 {
		t.Fatalf("object left behind: %v", files)
	}
}
