package sftpd_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/pkg/sftp"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/sftpd/sftptest"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// TestOpenSSHDf: OpenSSH's `df` (statvfs@openssh.com) over S3 shows an object store's room:
// 1 PiB, none of it used, a billion entries — figures it can compute with (it divides by the
// totals and scales the products) — and a missing path is an error, as with statvfs(2).
func TestOpenSSHDf(t *testing.T) {
	e := newS3Env(t)
	o := newOpenSSH(t, e.env, "alice")
	out := o.mustRun(t, "mkdir /d\ndf\ndf -h /d\ndf -i\n")
	for _, want := range []*regexp.Regexp{
		// Size, Used, Avail, (root) in KiB, %Capacity.
		regexp.MustCompile(`(?m)^\s*1099511627776\s+0\s+1099511627776\s+1099511627776\s+0%$`),
		regexp.MustCompile(`(?m)^\s*1\.0PB\s+0B?B\s+1\.0PB\s+1\.0PB\s+0%$`),
		regexp.MustCompile(`(?m)^\s*1000000000\s+0\s+1000000000\s+1000000000\s+0%$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("df output does not match %s:\n%s", want, out)
		}
	}
	// OpenSSH reports a failed df only through the batch's exit status.
	if out, code := o.run(t, "df /nowhere\n"); code == 0 || strings.Contains(out, "%") {
		t.Errorf("df of a missing path: exit %d\n%s", code, out)
	}
}

// TestStatVFS checks the figures themselves, read-only for a user who may write nothing, and
// that a store that cannot say still refuses the request as unsupported.
func TestStatVFS(t *testing.T) {
	srv := s3test.Start(t)
	store, err := s3store.New(srv.Client(), s3store.Config{Bucket: srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	reader := sftptest.NewUser(t, "reader", testPassword)
	reader.Permissions = users.Permissions{List: true, Download: true}
	e := newEnv(t, func(o *envOpts) {
		o.Users = []*users.User{reader}
		o.Storage = func(u *users.User) (storage.FS, error) {
			return access.Restrict(store.Home("", "users/"+u.Name+"/"), u.Permissions), nil
		}
	})
	for _, tt := range []struct {
		user     string
		readOnly bool
	}{{"alice", false}, {"reader", true}} {
		c := e.srv.MustDial(t, tt.user, e.password())
		st, err := c.StatVFS("/")
		if err != nil {
			t.Fatalf("%s: statvfs: %v", tt.user, err)
		}
		if st.Frsize != 4096 || st.TotalSpace() != 1<<50 || st.FreeSpace() != 1<<50 || st.Bavail != st.Bfree ||
			st.Files != 1e9 || st.Ffree != 1e9 || st.Namemax != 255 {
			t.Errorf("%s: statvfs %+v", tt.user, st)
		}
		if ro := st.Flag&1 != 0; ro != tt.readOnly {
			t.Errorf("%s: read-only flag %v, want %v", tt.user, ro, tt.readOnly)
		}
	}

	mem := newEnv(t) // memstore: no SpaceReporter
	_, err = mem.client(t).StatVFS("/")
	var se *sftp.StatusError
	if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("statvfs on a store without space figures: %v, want operation unsupported", err)
	}
}
