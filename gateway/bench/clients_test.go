package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The real clients the peer comparison drives, OpenSSH sftp and lftp, measured from inside
// their session: the script runs a local shell command (both clients run "!cmd" only once the
// previous command has finished) before and after the measured commands, which prints the
// clock and reads the server process's CPU time and peak RSS from /proc (the first also resets
// the peak). Logins and the clients' start-up are left out: that matters where a workload is
// short (a LIST of 1000 names), and a password login (bcrypt, for Ferry's FTP) is not data-path
// CPU.

// markCmd is the shell command of a mark for server process pid.
func markCmd(pid int, first bool) string {
	reset := ""
	if first {
		reset = fmt.Sprintf("echo 5 > /proc/%d/clear_refs; ", pid)
	}
	return fmt.Sprintf("!%sdate +FERRY-MARK%%s%%N; sed -n 's/^/FERRY-STAT /p' /proc/%d/stat; sed -n 's/^VmHWM:/FERRY-HWM/p' /proc/%d/status\n",
		reset, pid, pid)
}

var (
	markLine = regexp.MustCompile(`(?m)^FERRY-MARK(\d+)$`)
	statLine = regexp.MustCompile(`(?m)^FERRY-STAT (.*)$`)
	hwmLine  = regexp.MustCompile(`(?m)^FERRY-HWM\s*(\d+) kB$`)
)

// measured is a workload's time and what the server spent on it.
type measured struct {
	d time.Duration
	usage
}

// section reads the two marks in a client's output.
func section(out string) (measured, error) {
	marks, stats, hwms := markLine.FindAllStringSubmatch(out, -1), statLine.FindAllStringSubmatch(out, -1), hwmLine.FindAllStringSubmatch(out, -1)
	if len(marks) != 2 || len(stats) != 2 || len(hwms) != 2 {
		return measured{}, fmt.Errorf("want 2 marks in the client's output, found %d clocks, %d stats, %d peaks", len(marks), len(stats), len(hwms))
	}
	t0, err0 := strconv.ParseInt(marks[0][1], 10, 64)
	t1, err1 := strconv.ParseInt(marks[1][1], 10, 64)
	if err0 != nil || err1 != nil || t1 < t0 {
		return measured{}, fmt.Errorf("bad clock marks %q %q", marks[0][1], marks[1][1])
	}
	c0, err0 := parseStatCPU(stats[0][1])
	c1, err1 := parseStatCPU(stats[1][1])
	if err := errors.Join(err0, err1); err != nil {
		return measured{}, err
	}
	peak, err := strconv.ParseInt(hwms[1][1], 10, 64)
	if err != nil {
		return measured{}, err
	}
	return measured{d: time.Duration(t1 - t0), usage: usage{cpu: c1 - c0, peak: peak << 10}}, nil
}

// clientLimit bounds any one client run: a stuck transfer fails, it never hangs the benchmark.
const clientLimit = 15 * time.Minute

// runClient runs name with args and stdin, and returns its combined output, or an error with
// the output's end if the program fails or outlives clientLimit.
func runClient(stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clientLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", name, err, lastLines(out.String(), 3))
	}
	return out.String(), nil
}

// lastLines is the end of a client's output, for an error message.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " / ")
}

// sftpSession is OpenSSH sftp logged in as bench with a key, in batch mode (it stops at the
// first failing command), with extra options (e.g. -o Ciphers=…).
type sftpSession struct {
	addr    string
	keyFile string
	extra   []string
}

func (s sftpSession) args() []string {
	host, port, _ := net.SplitHostPort(s.addr)
	args := append([]string{"-q", "-b", "-", "-P", port, "-i", s.keyFile,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"}, s.extra...)
	return append(args, "bench@"+host)
}

// timed runs setup, then timed between two marks, in one session, and returns what the timed
// commands took: their time and server process pid's CPU time and peak RSS.
func (s sftpSession) timed(pid int, setup, timed string) (measured, error) {
	out, err := runClient(setup+markCmd(pid, true)+timed+markCmd(pid, false), "sftp", s.args()...)
	if err != nil {
		return measured{}, err
	}
	m, err := section(out)
	if err != nil {
		return measured{}, fmt.Errorf("sftp: %w: %s", err, lastLines(out, 3))
	}
	return m, nil
}

// run runs a batch.
func (s sftpSession) run(batch string) error {
	_, err := runClient(batch, "sftp", s.args()...)
	return err
}

// lftpSession is lftp logged in as bench with a password over plain FTP (passive mode): the
// comparison is of the servers' data paths, and the peer serves no TLS without a certificate.
type lftpSession struct {
	addr     string
	password string
	dir      string // where scripts are written
	settings string // lftp set commands run before connecting (FEAT is read at login)
}

// timed is sftpSession.timed for lftp. The session is connected and logged in before the
// first mark (lftp connects lazily, on the first command that needs the server: NOOP here).
func (s lftpSession) timed(pid int, setup, timed string) (measured, error) {
	script := fmt.Sprintf(`set cmd:fail-exit yes
set cmd:interactive no
set ftp:ssl-allow no
set ftp:passive-mode yes
set net:max-retries 1
set net:timeout 60
set net:reconnect-interval-base 1
set cache:enable no
set xfer:clobber yes
%sopen -u bench,%s ftp://%s
quote NOOP
%s%s%s%s`, s.settings, s.password, s.addr, setup, markCmd(pid, true), timed, markCmd(pid, false))
	f, err := os.CreateTemp(s.dir, "lftp-*.txt")
	if err != nil {
		return measured{}, err
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(script)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return measured{}, err
	}
	out, err := runClient("", "lftp", "-f", f.Name())
	if err != nil {
		return measured{}, err
	}
	m, err := section(out)
	if err != nil {
		return measured{}, fmt.Errorf("lftp: %w: %s", err, lastLines(out, 3))
	}
	return m, nil
}

// writeSmallFiles writes n files of size random bytes, each different, named f0000… into a
// new folder of dir.
func writeSmallFiles(tb testing.TB, dir string, n int, size int64) string {
	tb.Helper()
	small := filepath.Join(dir, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, size)
	for i := range n {
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(i)+1)
		rand.NewChaCha8(seed).Read(buf)
		if err := os.WriteFile(filepath.Join(small, fmt.Sprintf("f%04d", i)), buf, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return small
}
