package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// rcloneTree is the size of the tree synced: 10 folders of 20 files.
const rcloneDirs, rcloneFilesPerDir = 10, 20

// TestRcloneCopyTwice is what a partner's scheduled sync does: `rclone copy` (v1.76.0, as
// `make tools` installs it) of a 200-file tree to Ferry, then the same command again. The second
// run must transfer nothing, over SFTP and over FTP: rclone compares sizes and modification
// times in the listing with the local files, so a listing that shows the upload time instead
// of the time rclone set makes it upload everything again (and run the pipeline again).
func TestRcloneCopyTwice(t *testing.T) {
	t.Parallel()
	rclone := testtool.Path(t, "rclone")
	g := startGateway(t)
	src := t.TempDir()
	base := time.Date(2024, 3, 1, 8, 0, 0, 123456789, time.UTC) // sub-second, as local files are
	for d := range rcloneDirs {
		for f := range rcloneFilesPerDir {
			i := d*rcloneFilesPerDir + f
			data := bytes.Repeat([]byte(fmt.Sprintf("file %d;", i)), 1+i%37)
			writeLocal(t, filepath.Join(src, fmt.Sprintf("dir%02d", d), fmt.Sprintf("file%03d.csv", i)), data,
				base.Add(time.Duration(i)*time.Hour+time.Duration(i)*time.Millisecond))
		}
	}
	conf := filepath.Join(t.TempDir(), "rclone.conf") // no user configuration is read
	writeFile(t, conf, "")
	pass := strings.TrimSpace(runRclone(t, rclone, conf, "obscure", alicePassword))
	const files = rcloneDirs * rcloneFilesPerDir
	for _, tt := range []struct {
		proto string
		flags []string
	}{
		{"sftp", []string{"--sftp-host", "127.0.0.1", "--sftp-port", g.port(g.sftpAddr), "--sftp-user", "alice",
			"--sftp-pass", pass}},
		{"ftp", []string{"--ftp-host", "127.0.0.1", "--ftp-port", g.port(g.ftpAddr), "--ftp-user", "alice",
			"--ftp-pass", pass, "--ftp-explicit-tls", "--ftp-no-check-certificate"}},
	} {
		t.Run(tt.proto, func(t *testing.T) {
			dst := ":" + tt.proto + ":/rclone-" + tt.proto
			for run, want := range []int64{files, 0} {
				args := append([]string{"copy", src, dst, "--use-json-log", "-v"}, tt.flags...)
				st := rcloneStats(t, runRclone(t, rclone, conf, args...))
				if st.Errors != 0 || st.Transfers != want {
					t.Fatalf("run %d of rclone copy over %s: %d transfers, %d errors (%d checks); want %d transfers, no error",
						run+1, tt.proto, st.Transfers, st.Errors, st.Checks, want)
				}
				// Over SFTP rclone also checks the 10 folders' times.
				if run == 1 && st.Checks < files {
					t.Errorf("second run over %s made %d checks, want at least one per file (%d)", tt.proto, st.Checks, files)
				}
			}
		})
	}
}

// rcloneSummary is the part of rclone's final JSON stats line the test reads.
type rcloneSummary struct {
	Transfers int64 `json:"transfers"`
	Checks    int64 `json:"checks"`
	Errors    int64 `json:"errors"`
}

// rcloneStats returns the last stats object in rclone's JSON log.
func rcloneStats(t *testing.T, log string) rcloneSummary {
	t.Helper()
	var (
		last  rcloneSummary
		found bool
	)
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Stats *rcloneSummary `json:"stats"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Stats != nil {
			last, found = *line.Stats, true
		}
	}
	if !found {
		t.Fatalf("no stats in rclone's output:\n%s", log)
	}
	return last
}

func runRclone(t *testing.T, bin, conf string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--config", conf}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rclone %s: %v\n%s", strings.Join(args[:1], " "), err, out)
	}
	return string(out)
}
