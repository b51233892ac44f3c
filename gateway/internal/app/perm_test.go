package app_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jlaffaye/ftp"

	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/logbuf"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// shared is a gateway over versitygw whose users share one home, "shared/", with different
// permissions; every password is permPassword.
type shared struct {
	s3                *s3test.Server
	sftpAddr, ftpAddr string
	logs              *logbuf.Buffer
}

const permPassword = "pw-shared"

// The users of sharedGateway and their permissions.
var sharedUsers = map[string]string{
	"owner":    `["*"]`,
	"uploader": `[upload, rename]`, // new files only: no overwrite
	"lister":   `[list]`,
	"reader":   `[list, download]`,
}

func startShared(t *testing.T) *shared {
	t.Helper()
	srv := s3test.Start(t)
	dir := t.TempDir()
	hash, err := users.HashPassword(permPassword)
	if err != nil {
		t.Fatal(err)
	}
	var u strings.Builder
	u.WriteString("users:\n")
	for name, perms := range sharedUsers {
		fmt.Fprintf(&u, "  - name: %s\n    password_hash: %q\n    home: shared/\n    permissions: %s\n", name, hash, perms)
	}
	writeFile(t, filepath.Join(dir, "users.yaml"), u.String())
	g := &shared{s3: srv, sftpAddr: testtool.FreeAddr(t), ftpAddr: testtool.FreeAddr(t), logs: &logbuf.Buffer{}}
	cfgFile := filepath.Join(dir, "ferry.yaml")
	writeFile(t, cfgFile, fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
  metrics: ""
storage:
  s3: {bucket: %s, endpoint: %s, region: %s, path_style: true}
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
ftp:
  passive_ports: ""
  tls: {mode: none}
memory_limit: 0
`, g.sftpAddr, g.ftpAddr, srv.Bucket, srv.Endpoint, srv.Region))
	runGateway(t, cfgFile, g.logs, g.sftpAddr, g.ftpAddr)
	return g
}

func (g *shared) ftp(t *testing.T, user string) *ftpConn {
	t.Helper()
	f := dialFTP(t, g.ftpAddr)
	f.cmd("USER %s", user)
	if code, msg := f.cmd("PASS %s", permPassword); code != 230 {
		t.Fatalf("%s: login %d %s", user, code, msg)
	}
	f.cmd("TYPE I")
	return f
}

func (g *shared) object(t *testing.T, key string) ([]byte, *s3.GetObjectOutput) {
	t.Helper()
	out, err := g.s3.Client().GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(g.s3.Bucket), Key: aws.String("shared/" + key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	return b, out
}

func (g *shared) pendingUploads(t *testing.T) []string {
	t.Helper()
	out, err := g.s3.Client().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(g.s3.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys
}

// An upload-only user (no overwrite) opens x; another user creates x meanwhile and commits
// first. The first upload must not replace x: its close fails where the client sees it, x
// keeps the other user's content, and no multipart upload is left pending. Both protocols,
// one request (small file) and multipart (over the 5 MiB part size).
func TestOverwriteEnforcedAtCommit(t *testing.T) {
	t.Parallel()
	g := startShared(t)
	for _, size := range []int{1 << 10, 6<<20 + 7} {
		for _, proto := range []string{"sftp", "ftp"} {
			name := fmt.Sprintf("race-%s-%d.bin", proto, size)
			t.Run(name, func(t *testing.T) {
				mine := bytes.Repeat([]byte("u"), size)
				theirs := []byte("the owner's file")
				var finish func() error
				switch proto {
				case "sftp":
					sc := sftpClient(t, g.sftpAddr, "uploader", permPassword)
					f, err := sc.Create("/" + name)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := f.Write(mine); err != nil {
						t.Fatal(err)
					}
					finish = f.Close
				case "ftp":
					f := g.ftp(t, "uploader")
					d := f.data()
					if code, msg := f.cmd("STOR %s", name); code != 150 {
						t.Fatalf("STOR: %d %s", code, msg)
					}
					if _, err := d.Write(mine); err != nil {
						t.Fatal(err)
					}
					finish = func() error {
						d.Close()
						if code, msg := f.read(); code != 226 {
							return fmt.Errorf("%d %s", code, msg)
						}
						return nil
					}
				}
				// Let the upload reach S3 (the multipart one starts when its first part is full).
				time.Sleep(300 * time.Millisecond)
				// The owner creates the same name through the other protocol, and commits.
				if proto == "sftp" {
					oc, err := ftp.Dial(g.ftpAddr, ftp.DialWithTimeout(10*time.Second))
					if err != nil {
						t.Fatal(err)
					}
					defer oc.Quit()
					if err := oc.Login("owner", permPassword); err != nil {
						t.Fatal(err)
					}
					if err := oc.Stor(name, bytes.NewReader(theirs)); err != nil {
						t.Fatal(err)
					}
				} else {
					oc := sftpClient(t, g.sftpAddr, "owner", permPassword)
					w, err := oc.Create("/" + name)
					if err != nil {
						t.Fatal(err)
					}
					w.Write(theirs)
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
				}
				err := finish()
				if err == nil {
					t.Errorf("the upload-only user's upload replaced a file created meanwhile")
				} else {
					t.Logf("the losing upload's client sees: %v", err)
				}
				if got, _ := g.object(t, name); !bytes.Equal(got, theirs) {
					t.Errorf("%s holds %d bytes, want the owner's %q", name, len(got), theirs)
				}
				if p := g.pendingUploads(t); len(p) > 0 {
					t.Errorf("multipart uploads left pending: %v", p)
				}
			})
		}
	}
}

// Changing a file's recorded time or mode (MFMT, SITE CHMOD, SFTP setstat) modifies an existing
// file: a user without overwrite may do it to a file they uploaded themselves, not to another
// user's. The refusal is a reply the client sees; the file keeps its time and mode.
func TestSetStatNeedsOverwrite(t *testing.T) {
	t.Parallel()
	g := startShared(t)
	owner := sftpClient(t, g.sftpAddr, "owner", permPassword)
	w, err := owner.Create("/theirs.txt")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("owner's"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := owner.Stat("/theirs.txt")
	if err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

	f := g.ftp(t, "uploader")
	for _, c := range []string{"MFMT 20200102030405 theirs.txt", "SITE CHMOD 600 theirs.txt"} {
		code, msg := f.cmd("%s", c)
		t.Logf("uploader %s: %d %s", c, code, msg)
		if code != 550 {
			t.Errorf("uploader %s: %d %s, want 550", c, code, msg)
		}
	}
	up := sftpClient(t, g.sftpAddr, "uploader", permPassword)
	if err := up.Chtimes("/theirs.txt", old, old); err == nil {
		t.Errorf("uploader's SFTP utime of another user's file succeeded")
	}
	if err := up.Chmod("/theirs.txt", 0o600); err == nil {
		t.Errorf("uploader's SFTP chmod of another user's file succeeded")
	}
	after, err := owner.Stat("/theirs.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || after.Mode() != before.Mode() {
		t.Errorf("another user's file changed: %v %v -> %v %v", before.ModTime(), before.Mode(), after.ModTime(), after.Mode())
	}

	// The uploader's own new file takes a time, over both protocols.
	d := f.data()
	if code, msg := f.cmd("STOR mine.txt"); code != 150 {
		t.Fatalf("STOR: %d %s", code, msg)
	}
	d.Write([]byte("mine"))
	d.Close()
	if code, msg := f.read(); code != 226 {
		t.Fatalf("STOR: %d %s", code, msg)
	}
	if code, msg := f.cmd("MFMT 20200102030405 mine.txt"); code != 213 {
		t.Errorf("uploader MFMT of their own file: %d %s", code, msg)
	}
	if st, err := owner.Stat("/mine.txt"); err != nil || !st.ModTime().Equal(old) {
		t.Errorf("the uploader's own file: %v, %v, want time %v", st.ModTime(), err, old)
	}
	newer := old.Add(24 * time.Hour)
	if err := up.Chtimes("/mine.txt", newer, newer); err != nil {
		t.Errorf("uploader's SFTP utime of their own file: %v", err)
	}
	if st, err := owner.Stat("/mine.txt"); err != nil || !st.ModTime().Equal(newer) {
		t.Errorf("the uploader's own file: %v, %v, want time %v", st.ModTime(), err, newer)
	}
}

// HASH reads the file: a list-only user may not, and a read-only user's HASH writes nothing
// (it used to cache the SHA-256 as an object tag).
func TestHashNeedsDownloadAndWritesNothing(t *testing.T) {
	t.Parallel()
	g := startShared(t)
	data := bytes.Repeat([]byte("native upload "), 1000)
	sum := sha256.Sum256(data)
	client := g.s3.Client()
	if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(g.s3.Bucket),
		Key: aws.String("shared/native.bin"), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	_, head := g.object(t, "native.bin")

	l := g.ftp(t, "lister")
	if code, msg := l.cmd("HASH native.bin"); code != 550 || strings.Contains(msg, hex.EncodeToString(sum[:])) {
		t.Errorf("list-only HASH: %d %s, want 550", code, msg)
	}
	r := g.ftp(t, "reader")
	if code, msg := r.cmd("HASH native.bin"); code != 213 || !strings.Contains(msg, hex.EncodeToString(sum[:])) {
		t.Errorf("read-only HASH: %d %s, want 213 with the SHA-256", code, msg)
	}
	tags, err := client.GetObjectTagging(t.Context(), &s3.GetObjectTaggingInput{Bucket: aws.String(g.s3.Bucket), Key: aws.String("shared/native.bin")})
	if err != nil {
		t.Fatal(err)
	}
	if len(tags.TagSet) != 0 {
		t.Errorf("a read-only user's HASH wrote tags: %v", tags.TagSet)
	}
	if _, now := g.object(t, "native.bin"); aws.ToString(now.ETag) != aws.ToString(head.ETag) || !aws.ToTime(now.LastModified).Equal(aws.ToTime(head.LastModified)) {
		t.Errorf("the object changed: %s -> %s", aws.ToString(head.ETag), aws.ToString(now.ETag))
	}
}
