package ftpd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// Real clients, as Debian packages them: curl and lftp, in passive and extended passive mode,
// plain (loopback, TLS optional) and explicit FTPS.

func runTool(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

type clientMode struct {
	name string
	tls  bool
	epsv bool
}

var clientModes = []clientMode{
	{"plain-pasv", false, false},
	{"plain-epsv", false, true},
	{"ftps-pasv", true, false},
	{"ftps-epsv", true, true},
}

func (m clientMode) curlArgs(e *env) []string {
	args := []string{"-sS", "--fail", "--max-time", "60", "--user", testUser + ":" + testPass, "--ftp-pasv"}
	if !m.epsv {
		args = append(args, "--disable-epsv")
	}
	if m.tls {
		args = append(args, "--ssl-reqd", "-k")
	}
	return args
}

func (e *env) url(p string) string { return "ftp://127.0.0.1:" + e.port + p }

func TestCurl(t *testing.T) {
	curl := testtool.Path(t, "curl")
	e := startEnv(t, Config{TLS: TLSConfig{Mode: TLSOptional}})
	for _, m := range clientModes {
		t.Run(m.name, func(t *testing.T) {
			dir := "/curl-" + m.name
			data := randomData(t, 9<<20+3)
			src := writeTemp(t, data)
			args := append(m.curlArgs(e), "--ftp-create-dirs", "-T", src, e.url(dir+"/up.bin"))
			runTool(t, 2*time.Minute, curl, args...)
			stored, err := e.mem.ReadFile(dir + "/up.bin")
			if err != nil || sha(stored) != sha(data) {
				t.Fatalf("stored %d bytes (%v), want %d with the same SHA-256", len(stored), err, len(data))
			}
			opts, _ := e.mem.CreateOptions(dir + "/up.bin")
			if want := map[bool]string{false: "ftp", true: "ftps"}[m.tls]; opts.Protocol != want {
				t.Fatalf("protocol %q, want %q", opts.Protocol, want)
			}

			out := filepath.Join(t.TempDir(), "down.bin")
			runTool(t, 2*time.Minute, curl, append(m.curlArgs(e), "-o", out, e.url(dir+"/up.bin"))...)
			got, err := os.ReadFile(out)
			if err != nil || sha(got) != sha(data) {
				t.Fatalf("downloaded %d bytes (%v), want the uploaded SHA-256", len(got), err)
			}

			listing := runTool(t, time.Minute, curl, append(m.curlArgs(e), e.url(dir+"/"))...)
			if !strings.Contains(listing, fmt.Sprint(len(data))) || !strings.Contains(listing, "up.bin") {
				t.Fatalf("LIST output lacks the file and its size:\n%s", listing)
			}
			names := runTool(t, time.Minute, curl, append(m.curlArgs(e), "--list-only", e.url(dir+"/"))...)
			if strings.TrimSpace(names) != "up.bin" {
				t.Fatalf("NLST output %q", names)
			}
			// A missing file is a permanent failure (curl exit 78: remote file not found).
			cmd := exec.Command(curl, append(m.curlArgs(e), "-o", out, e.url(dir+"/missing"))...)
			if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 78 {
				t.Fatalf("download of a missing file: %v, want curl exit 78", err)
			}
		})
	}
}

// A curl uploading from a pipe is killed with SIGKILL mid-transfer: no object, no pending upload.
func TestKilledCurlLeavesNothing(t *testing.T) {
	curl := testtool.Path(t, "curl")
	e := startEnv(t, Config{TLS: TLSConfig{Mode: TLSOptional}})
	for _, m := range clientModes {
		t.Run(m.name, func(t *testing.T) {
			name := "/killed-" + m.name + ".bin"
			cmd := exec.Command(curl, append(m.curlArgs(e), "-T", "-", e.url(name))...)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			before := e.store.written.Load()
			chunk := randomData(t, 1<<20)
			// Keep the pipe open and feed it until 4 MiB reached the store.
			deadline := time.Now().Add(30 * time.Second)
			for e.store.written.Load() < before+4<<20 {
				if time.Now().After(deadline) {
					t.Fatal("upload did not progress")
				}
				if _, err := stdin.Write(chunk); err != nil {
					t.Fatalf("feed curl: %v", err)
				}
			}
			if e.mem.Pending() != 1 {
				t.Fatalf("%d pending uploads, want 1", e.mem.Pending())
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			stdin.Close()
			e.assertNothingStored(name)
		})
	}
}

func lftpScript(e *env, m clientMode, cmds ...string) []string {
	set := []string{
		"set net:max-retries 1", "set net:timeout 20", "set net:reconnect-interval-base 1",
		"set ftp:passive-mode true",
		fmt.Sprintf("set ftp:prefer-epsv %v", m.epsv),
		fmt.Sprintf("set ftp:ssl-allow %v", m.tls),
	}
	if m.tls {
		set = append(set, "set ftp:ssl-force true", "set ftp:ssl-protect-data true", "set ssl:verify-certificate no")
	}
	set = append(set, fmt.Sprintf("open -u %s,%s -p %s 127.0.0.1", testUser, testPass, e.port))
	return []string{"-c", strings.Join(append(set, cmds...), "; ")}
}

func TestLftp(t *testing.T) {
	lftp := testtool.Path(t, "lftp")
	e := startEnv(t, Config{TLS: TLSConfig{Mode: TLSOptional}})
	for _, m := range clientModes {
		t.Run(m.name, func(t *testing.T) {
			dir := "/lftp-" + m.name
			data := randomData(t, 9<<20+5)
			src := writeTemp(t, data)
			out := filepath.Join(t.TempDir(), "down.bin")
			listing := runTool(t, 2*time.Minute, lftp, lftpScript(e, m,
				"mkdir "+dir,
				"put "+src+" -o "+dir+"/up.bin",
				"get "+dir+"/up.bin -o "+out,
				"mv "+dir+"/up.bin "+dir+"/moved.bin",
				"cls -l "+dir,
			)...)
			stored, err := e.mem.ReadFile(dir + "/moved.bin")
			if err != nil || sha(stored) != sha(data) {
				t.Fatalf("stored %d bytes (%v), want %d with the same SHA-256", len(stored), err, len(data))
			}
			got, err := os.ReadFile(out)
			if err != nil || sha(got) != sha(data) {
				t.Fatalf("downloaded %d bytes (%v)", len(got), err)
			}
			if !strings.Contains(listing, "moved.bin") || !strings.Contains(listing, fmt.Sprint(len(data))) {
				t.Fatalf("cls -l output lacks the file or its size:\n%s", listing)
			}
			if opts, _ := e.mem.CreateOptions(dir + "/moved.bin"); opts.User != testUser {
				t.Fatalf("metadata %+v", opts)
			}
		})
	}
}

// lftp retries 4xx replies forever: a missing file must fail at once. (net:max-retries is left
// at its default here: with it lftp would give up on a 4xx too.)
func TestLftpMissingFileFailsFast(t *testing.T) {
	lftp := testtool.Path(t, "lftp")
	e := startEnv(t, Config{})
	for _, c := range []struct {
		cmd    string
		wantOK bool
	}{
		{"get /nope -o " + filepath.Join(t.TempDir(), "x"), false},
		{"cls -l /nope/", false},
		{"rm /nope", false},
		{"cd /nope", false},
		{"ls /nope", true}, // an empty listing, as vsftpd gives
		{"nlist /nope", true},
	} {
		script := []string{"-c", fmt.Sprintf("set ftp:ssl-force true; set ssl:verify-certificate no; open -u %s,%s -p %s 127.0.0.1; %s",
			testUser, testPass, e.port, c.cmd)}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		out, err := exec.CommandContext(ctx, lftp, script...).CombinedOutput()
		cancel()
		if (err == nil) != c.wantOK {
			t.Errorf("%q: %v, want success %v:\n%s", c.cmd, err, c.wantOK, out)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%q took %v: lftp retried a temporary failure\n%s", c.cmd, d, out)
		}
	}
}

// With TLS required, lftp forced to plaintext is refused with a permanent error.
func TestLftpPlaintextRefused(t *testing.T) {
	lftp := testtool.Path(t, "lftp")
	e := startEnv(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, lftp, lftpScript(e, clientMode{}, "ls /")...).CombinedOutput()
	if err == nil {
		t.Fatalf("plaintext lftp logged in:\n%s", out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v: the refusal looked temporary\n%s", d, out)
	}
	if !strings.Contains(string(out), "TLS") {
		t.Errorf("lftp's error does not say TLS is required:\n%s", out)
	}
}

// With TLS required, lftp logged in over TLS but told to keep data in clear (ftp:ssl-protect-data
// and ftp:ssl-protect-list no) is refused at once by every listing and transfer: a 450 made it retry `ls` forever.
func TestLftpClearDataRefusedFast(t *testing.T) {
	lftp := testtool.Path(t, "lftp")
	e := startEnv(t, Config{})
	if err := e.mem.WriteFile("/there.txt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"ls /", "cls -l /", "nlist /", "get /there.txt -o " + filepath.Join(t.TempDir(), "x"),
		"put " + writeTemp(t, []byte("y")) + " -o /clear.txt"} {
		script := []string{"-c", fmt.Sprintf("set ftp:ssl-force true; set ftp:ssl-protect-data no; set ftp:ssl-protect-list no; set ssl:verify-certificate no; "+
			"open -u %s,%s -p %s 127.0.0.1; %s", testUser, testPass, e.port, c)}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		out, err := exec.CommandContext(ctx, lftp, script...).CombinedOutput()
		cancel()
		if err == nil {
			t.Errorf("%q over a clear data channel succeeded:\n%s", c, out)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%q took %v: lftp retried a temporary failure\n%s", c, d, out)
		}
		if !strings.Contains(string(out), "521") {
			t.Errorf("%q: lftp does not report the 521:\n%s", c, out)
		}
	}
	e.assertNothingStored("/clear.txt")
}
