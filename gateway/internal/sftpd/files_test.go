package sftpd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
)

func TestUploadDownloadSizes(t *testing.T) {
	e := newEnv(t)
	for _, concurrent := range []bool{false, true} {
		c := e.client(t, sftp.UseConcurrentWrites(concurrent), sftp.UseConcurrentReads(true))
		for _, size := range []int{0, 1, 32767, 32768, 32769, 5<<20 + 3} {
			t.Run(fmt.Sprintf("concurrent=%v/%d", concurrent, size), func(t *testing.T) {
				name := fmt.Sprintf("/f-%v-%d.bin", concurrent, size)
				data := randomBytes(uint64(size), size)
				if err := upload(t, c, name, data); err != nil {
					t.Fatalf("upload: %v", err)
				}
				stored, err := e.mem.ReadFile(name)
				if err != nil {
					t.Fatal(err)
				}
				if sha(stored) != sha(data) {
					t.Fatalf("stored %d bytes, sha256 differs from the %d sent", len(stored), len(data))
				}
				got, err := download(t, c, name)
				if err != nil {
					t.Fatalf("download: %v", err)
				}
				if sha(got) != sha(data) {
					t.Fatalf("downloaded %d bytes, sha256 differs", len(got))
				}
				fi, err := c.Stat(name)
				if err != nil || fi.Size() != int64(size) || fi.IsDir() {
					t.Fatalf("stat: %v %v", fi, err)
				}
				opts, _ := e.mem.CreateOptions(name)
				if opts.User != "alice" || opts.Protocol != "sftp" || !strings.HasPrefix(opts.ClientAddr, "127.0.0.1:") || len(opts.TransferID) < 16 {
					t.Fatalf("create options %+v", opts)
				}
			})
		}
	}
	ids := map[string]bool{}
	for _, f := range e.mem.Files() {
		o, _ := e.mem.CreateOptions(f)
		if ids[o.TransferID] {
			t.Fatalf("transfer id %s reused", o.TransferID)
		}
		ids[o.TransferID] = true
	}
}

// TestOutOfOrderWrites drives writes in reverse order through the protocol (each WriteAt is
// one request), then with pkg/sftp's concurrent writer: the stored object must be exact.
func TestOutOfOrderWrites(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(64))

	data := randomBytes(1, 256<<10)
	f, err := c.Create("/reverse")
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 16 << 10
	for off := len(data) - chunk; off >= 0; off -= chunk {
		if _, err := f.WriteAt(data[off:off+chunk], int64(off)); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.mem.ReadFile("/reverse"); !bytes.Equal(got, data) {
		t.Fatal("reverse-order upload stored wrong bytes")
	}

	big := randomBytes(2, 12<<20+5)
	f, err = c.Create("/concurrent")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFromWithConcurrency(bytes.NewReader(big), 64); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.mem.ReadFile("/concurrent"); sha(got) != sha(big) {
		t.Fatal("concurrent upload stored wrong bytes")
	}
}

// A rewrite of already stored bytes (what resume tools do) fails the upload; nothing is stored.
func TestRewriteFailsUpload(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	f, err := c.Create("/rewrite")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("j"), 0); statusCode(err) != fxOpUnsupported {
		t.Fatalf("rewrite = %v, want op unsupported", err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("close after a refused write succeeded")
	}
	if _, err := e.mem.ReadFile("/rewrite"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("object stored after failed upload: %v", err)
	}
	if e.mem.Pending() != 0 {
		t.Fatal("storage upload left open")
	}

	// A gap (data missing before the last write) fails at close too.
	f, err = c.Create("/gap")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("tail"), 10); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("close with a gap succeeded")
	}
	if len(e.mem.Files()) != 0 {
		t.Fatalf("files stored: %v", e.mem.Files())
	}
}

func TestResumeAndAppendRefused(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	if err := e.mem.WriteFile("/existing", []byte("old content")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		flags int
	}{
		{"append", os.O_WRONLY | os.O_APPEND},
		{"write without truncate", os.O_WRONLY},
		{"create without truncate", os.O_WRONLY | os.O_CREATE},
		{"exclusive", os.O_WRONLY | os.O_CREATE | os.O_EXCL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := c.OpenFile("/existing", tt.flags)
			if err == nil {
				f.Close()
				t.Fatal("open succeeded")
			}
		})
	}
	if got, _ := e.mem.ReadFile("/existing"); string(got) != "old content" {
		t.Fatalf("existing file changed: %q", got)
	}
	// Without an existing object there is nothing to resume: these opens work.
	f, err := c.OpenFile("/new", os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("x"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// And a truncating open replaces the object.
	if err := upload(t, c, "/existing", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.mem.ReadFile("/existing"); string(got) != "new" {
		t.Fatalf("replaced content %q", got)
	}
}

func TestFileOperations(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Mkdir("/docs"))
	if err := c.Mkdir("/docs"); err == nil {
		t.Fatal("mkdir of an existing dir succeeded")
	}
	must(upload(t, c, "/docs/a.txt", []byte("A")))
	must(upload(t, c, "/docs/b.txt", []byte("BB")))
	must(c.Mkdir("/docs/sub"))

	infos, err := c.ReadDir("/docs")
	must(err)
	var names []string
	for _, fi := range infos {
		n := fi.Name()
		if fi.IsDir() {
			n += "/"
		}
		names = append(names, fmt.Sprintf("%s:%d", n, fi.Size()))
	}
	sort.Strings(names)
	if want := []string{"a.txt:1", "b.txt:2", "sub/:0"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("readdir = %v, want %v", names, want)
	}
	if _, err := c.ReadDir("/nope"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("readdir missing = %v", err)
	}

	fi, err := c.Stat("/docs")
	must(err)
	if !fi.IsDir() {
		t.Fatal("stat dir: not a dir")
	}
	if _, err := c.Lstat("/docs/a.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat("/docs/missing"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat missing = %v", err)
	}
	if p, err := c.RealPath("../../docs/./sub/.."); err != nil || p != "/docs" {
		t.Fatalf("realpath = %q %v", p, err)
	}
	if wd, err := c.Getwd(); err != nil || wd != "/" {
		t.Fatalf("getwd = %q %v", wd, err)
	}
	if _, err := c.ReadLink("/docs/a.txt"); statusCode(err) != fxOpUnsupported {
		t.Fatalf("readlink = %v", err)
	}
	if err := c.Symlink("/docs/a.txt", "/link"); statusCode(err) != fxOpUnsupported {
		t.Fatalf("symlink = %v", err)
	}

	// Plain rename refuses to replace; posix-rename replaces.
	if err := c.Rename("/docs/a.txt", "/docs/b.txt"); statusCode(err) != fxFailure {
		t.Fatalf("rename onto existing = %v", err)
	}
	must(c.Rename("/docs/a.txt", "/docs/c.txt"))
	must(c.PosixRename("/docs/c.txt", "/docs/b.txt"))
	if got, _ := e.mem.ReadFile("/docs/b.txt"); string(got) != "A" {
		t.Fatalf("after posix-rename b.txt = %q", got)
	}
	must(c.Rename("/docs", "/moved"))
	if got := e.mem.Files(); !reflect.DeepEqual(got, []string{"/moved/b.txt"}) {
		t.Fatalf("files after dir rename: %v", got)
	}

	if err := c.RemoveDirectory("/moved"); statusCode(err) != fxFailure {
		t.Fatalf("rmdir non-empty = %v", err)
	}
	if err := c.Remove("/moved/nope"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("remove missing = %v", err)
	}
	must(c.Remove("/moved/b.txt"))
	must(c.RemoveDirectory("/moved/sub"))
	must(c.RemoveDirectory("/moved"))
	if _, err := c.Stat("/moved"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat after removing everything = %v", err)
	}
	if _, err := c.Open("/"); err == nil {
		// Opening a directory for reading must fail (it is not a file).
		t.Fatal("open dir succeeded")
	}
}

func TestSetstatAlwaysSucceeds(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	if err := upload(t, c, "/f", []byte("x")); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := c.Chmod("/f", 0o600); err != nil {
		t.Fatalf("chmod: %v", err)
	}
	if err := c.Chtimes("/f", mt, mt); err != nil {
		t.Fatalf("chtimes: %v", err)
	}
	fi, err := c.Stat("/f")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(mt) {
		t.Fatalf("stat after setstat: %v %v", fi.Mode(), fi.ModTime())
	}
	// Size, owner and missing paths are not errors for the client (logged instead).
	if err := c.Truncate("/f", 0); err != nil {
		t.Fatalf("truncate: %v", err)
	}
	if err := c.Chown("/f", 1, 1); err != nil {
		t.Fatalf("chown: %v", err)
	}
	if err := c.Chmod("/missing", 0o644); err != nil {
		t.Fatalf("chmod missing: %v", err)
	}

	// fsetstat on an open upload, as `put -p` does before close: recorded at commit.
	f, err := c.Create("/p")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("data"))
	if err := f.Chmod(0o640); err != nil {
		t.Fatalf("fsetstat chmod: %v", err)
	}
	if err := c.Chtimes("/p", mt, mt); err != nil {
		t.Fatalf("setstat during upload: %v", err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 4 {
		t.Fatalf("fstat during upload: %v %v", fi, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err = c.Stat("/p")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mt) || fi.Size() != 4 {
		t.Fatalf("attrs not committed with the upload: %v %v %d", fi.Mode(), fi.ModTime(), fi.Size())
	}
}

// The FS is the user's home: no path the client sends names anything above it.
func TestPathsStayInHome(t *testing.T) {
	e := newEnv(t)
	if err := e.mem.WriteFile("/inside", []byte("i")); err != nil {
		t.Fatal(err)
	}
	c := e.client(t)
	if err := c.Mkdir("/etc"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../../etc/passwd", "/../../../etc/passwd", "/etc/../../etc/passwd"} {
		if err := upload(t, c, p, []byte(p)); err != nil {
			t.Fatalf("upload %q: %v", p, err)
		}
	}
	// Names S3 cannot hold unambiguously are refused, not guessed at.
	if err := upload(t, c, "..\\..\\etc\\passwd", []byte("x")); statusCode(err) != fxFailure {
		t.Fatalf("backslash path: %v, want failure", err)
	}
	// Every name landed inside the home ("/" of the store), clamped.
	if got := e.mem.Files(); !reflect.DeepEqual(got, []string{"/etc/passwd", "/inside"}) {
		t.Fatalf("files = %v", got)
	}
	infos, err := c.ReadDir("../../..")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range infos {
		names = append(names, fi.Name())
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, []string{"etc", "inside"}) {
		t.Fatalf("listing above the root = %v, want the home", names)
	}
}

func TestReadOnlyUser(t *testing.T) {
	ro := (*users.User)(nil)
	e := newEnv(t, func(o *envOpts) {
		ro = &users.User{Name: "reader", Auth: users.AuthAny, Permissions: users.Permissions{List: true, Download: true}}
		o.Users = append(o.Users, ro)
	})
	ro.PublicKeys = e.alice.PublicKeys // same key, different account
	if err := e.mem.WriteFile("/report.csv", []byte("a,b")); err != nil {
		t.Fatal(err)
	}
	c := e.srv.MustDial(t, "reader", e.pubkey())
	if got, err := download(t, c, "/report.csv"); err != nil || string(got) != "a,b" {
		t.Fatalf("download: %q %v", got, err)
	}
	if _, err := c.ReadDir("/"); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{
		"upload new":  upload(t, c, "/new", []byte("x")),
		"overwrite":   upload(t, c, "/report.csv", []byte("x")),
		"remove":      c.Remove("/report.csv"),
		"mkdir":       c.Mkdir("/d"),
		"rename":      c.Rename("/report.csv", "/r2"),
		"posixrename": c.PosixRename("/report.csv", "/r2"),
	}
	for what, err := range checks {
		if !errors.Is(err, os.ErrPermission) && statusCode(err) != fxPermissionDenied {
			t.Errorf("%s: %v, want permission denied", what, err)
		}
	}
	if got := e.mem.Files(); !reflect.DeepEqual(got, []string{"/report.csv"}) {
		t.Fatalf("files changed: %v", got)
	}
	// Recording a mode modifies the file: refused, where the client sees it.
	if err := c.Chmod("/report.csv", 0o600); !errors.Is(err, os.ErrPermission) && statusCode(err) != fxPermissionDenied {
		t.Fatalf("chmod: %v, want permission denied", err)
	}
	if st, err := c.Stat("/report.csv"); err != nil || st.Mode().Perm() == 0o600 {
		t.Fatalf("a refused chmod changed the mode: %v, %v", st.Mode(), err)
	}
}

// A client killed mid-upload (TCP connection cut) leaves no object and no open storage upload.
func TestKilledClientLeavesNothing(t *testing.T) {
	for _, blocked := range []bool{false, true} {
		t.Run(fmt.Sprintf("waiting_write=%v", blocked), func(t *testing.T) {
			e := newEnv(t)
			c, nc := e.rawClient(t)
			f, err := c.Create("/partial.bin")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(randomBytes(3, 1<<20)); err != nil {
				t.Fatal(err)
			}
			if blocked {
				// A write far beyond the window waits on the server for missing data; the
				// disconnect must release it (not wait for WriteWaitTimeout).
				lateDone := make(chan error, 1)
				go func() { _, err := f.WriteAt([]byte("late"), 1<<30); lateDone <- err }()
				select {
				case err := <-lateDone:
					t.Fatalf("write beyond the window returned at once: %v", err)
				case <-time.After(100 * time.Millisecond):
				}
			}
			testtool.Eventually(t, 5*time.Second, "upload to start", func() bool { return e.mem.Pending() == 1 })
			start := time.Now()
			nc.Close()
			testtool.Eventually(t, 10*time.Second, "upload to be aborted", func() bool { return e.mem.Pending() == 0 })
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("abort took %v", d)
			}
			if files := e.mem.Files(); len(files) != 0 {
				t.Fatalf("object left behind: %v", files)
			}
			testtool.Eventually(t, 5*time.Second, "abort to be logged", func() bool {
				return strings.Contains(e.srv.Logs.String(), "upload aborted")
			})
		})
	}
}

// failingCommit makes every upload's Close fail, like a refused CompleteMultipartUpload.
type failingCommit struct{ storage.FS }

type failingUpload struct{ storage.Upload }

func (f failingCommit) Create(ctx context.Context, name string, o storage.CreateOptions) (storage.Upload, error) {
	u, err := f.FS.Create(ctx, name, o)
	return failingUpload{u}, err
}

func (u failingUpload) Close() error {
	u.Upload.Abort(nil)
	return errors.New("complete multipart upload: InternalError")
}

func TestFailedCommitFailsTransfer(t *testing.T) {
	var e *env
	e = newEnv(t, func(o *envOpts) {
		o.Storage = func(u *users.User) (storage.FS, error) {
			return access.Restrict(failingCommit{e.mem}, u.Permissions), nil
		}
	})
	c := e.client(t)
	err := upload(t, c, "/x", []byte("data"))
	if statusCode(err) != fxFailure {
		t.Fatalf("upload with failing commit = %v, want failure", err)
	}
	if strings.Contains(err.Error(), "InternalError") {
		t.Fatalf("storage detail leaked to the client: %v", err)
	}
	if !strings.Contains(e.srv.Logs.String(), "InternalError") {
		t.Fatal("storage detail not logged")
	}
}
