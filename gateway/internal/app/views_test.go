package app_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jlaffaye/ftp"
)

// TestEveryViewAgrees checks every way a client sees a file — SFTP stat, lstat, fstat and
// readdir; FTP MLSD, LIST, MLST, MDTM and SIZE — against every way a file gets its time: with
// the upload (OpenSSH `put -p`, small and multipart), by setstat after it, by MFMT, from S3
// alone (an object no client dated), and set again later. All views must show one size and
// one time, the one set or else S3's LastModified: sync tools compare listings with their
// local files and re-send whatever differs.
func TestEveryViewAgrees(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	ctx := t.Context()
	sc := sftpClient(t, g.sftpAddr, "alice", alicePassword)
	mlsd, list := g.ftp(t, true), g.ftp(t, false)
	if !mlsd.IsTimePreciseInList() || list.IsTimePreciseInList() {
		t.Fatal("want one FTP connection listing with MLSD and one with LIST")
	}
	if err := sc.Mkdir("/views"); err != nil {
		t.Fatal(err)
	}
	day := func(y, m, d int) time.Time { return time.Date(y, time.Month(m), d, 10, 11, 12, 0, time.UTC) }
	recent := time.Now().Add(-50 * time.Hour).Truncate(time.Second).UTC()
	local := t.TempDir()
	big := make([]byte, 6<<20) // past the 5 MiB part size: a multipart upload
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}

	type file struct {
		name string
		size int64
		set  time.Time // zero: the object's LastModified
	}
	var files []*file
	add := func(name string, size int, set time.Time) *file {
		f := &file{name: name, size: int64(size), set: set}
		files = append(files, f)
		return f
	}
	s3put := func(name string, data []byte) {
		key := g.home + "views/" + name
		if _, err := g.s3.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &g.s3.Bucket, Key: &key,
			Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
	}
	sftpPut := func(name string, data []byte) {
		f, err := sc.Create("/views/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ftpPut := func(name string, data []byte) {
		if err := mlsd.Stor("/views/"+name, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}

	// From S3 alone, and from uploads that carry no time.
	s3put("s3-only.csv", []byte("a,b\n1,2\n"))
	add("s3-only.csv", 8, time.Time{})
	sftpPut("plain-sftp.csv", []byte("plain over sftp"))
	add("plain-sftp.csv", 15, time.Time{})
	ftpPut("plain-ftp.csv", []byte("plain over ftp"))
	add("plain-ftp.csv", 14, time.Time{})

	// With the upload: `put -p` sends fsetstat on the open handle before closing it.
	writeLocal(t, filepath.Join(local, "put-p.csv"), []byte("preserved"), day(2021, 4, 5))
	writeLocal(t, filepath.Join(local, "put-p-big.bin"), big, day(2020, 2, 29))
	g.openSSH(t, local, "put -p put-p.csv /views/put-p.csv\nput -p put-p-big.bin /views/put-p-big.bin\n")
	add("put-p.csv", 9, day(2021, 4, 5))
	add("put-p-big.bin", len(big), day(2020, 2, 29))

	// Afterwards: setstat (what rclone and WinSCP send) and MFMT.
	sftpPut("setstat.csv", []byte("set after"))
	if err := sc.Chtimes("/views/setstat.csv", day(2019, 9, 9), day(2019, 9, 9)); err != nil {
		t.Fatal(err)
	}
	add("setstat.csv", 9, day(2019, 9, 9))
	ftpPut("mfmt.csv", []byte("mfmt after"))
	if err := mlsd.SetTime("/views/mfmt.csv", day(2018, 8, 8)); err != nil {
		t.Fatal(err)
	}
	add("mfmt.csv", 10, day(2018, 8, 8))
	ftpPut("mfmt-recent.csv", []byte("recent"))
	if err := mlsd.SetTime("/views/mfmt-recent.csv", recent); err != nil {
		t.Fatal(err)
	}
	add("mfmt-recent.csv", 6, recent)

	// Set again, and set on an object S3 alone wrote.
	if err := mlsd.SetTime("/views/put-p.csv", day(2022, 2, 2)); err != nil {
		t.Fatal(err)
	}
	files[3].set = day(2022, 2, 2)
	s3put("s3-then-setstat.csv", []byte("dated later"))
	if err := sc.Chtimes("/views/s3-then-setstat.csv", day(2017, 7, 7), day(2017, 7, 7)); err != nil {
		t.Fatal(err)
	}
	add("s3-then-setstat.csv", 11, day(2017, 7, 7))

	for _, f := range files {
		if f.set.IsZero() {
			key := g.home + "views/" + f.name
			head, err := g.s3.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &g.s3.Bucket, Key: &key})
			if err != nil {
				t.Fatal(err)
			}
			f.set = aws.ToTime(head.LastModified).Truncate(time.Second)
		}
	}

	// Every view of every file.
	views := map[string]map[string]view{} // file -> view name -> what it showed
	record := func(file, name string, size int64, at time.Time, isList bool) {
		if views[file] == nil {
			views[file] = map[string]view{}
		}
		views[file][name] = view{size, at, isList}
	}
	entries, err := sc.ReadDir("/views")
	if err != nil {
		t.Fatal(err)
	}
	for _, fi := range entries {
		record(fi.Name(), "sftp readdir", fi.Size(), fi.ModTime(), false)
	}
	for _, c := range []struct {
		name string
		conn *ftp.ServerConn
	}{{"ftp MLSD", mlsd}, {"ftp LIST", list}} {
		es, err := c.conn.List("/views")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			record(e.Name, c.name, int64(e.Size), e.Time, c.name == "ftp LIST")
		}
	}
	for _, f := range files {
		p := "/views/" + f.name
		for name, stat := range map[string]func(string) (os.FileInfo, error){
			"sftp stat":  sc.Stat,
			"sftp lstat": sc.Lstat,
			"sftp fstat": func(p string) (os.FileInfo, error) {
				h, err := sc.Open(p)
				if err != nil {
					return nil, err
				}
				defer h.Close()
				return h.Stat()
			},
		} {
			fi, err := stat(p)
			if err != nil {
				t.Fatalf("%s %s: %v", name, p, err)
			}
			record(f.name, name, fi.Size(), fi.ModTime(), false)
		}
		e, err := mlsd.GetEntry(p)
		if err != nil {
			t.Fatalf("MLST %s: %v", p, err)
		}
		record(f.name, "ftp MLST", int64(e.Size), e.Time, false)
		mdtm, err := mlsd.GetTime(p)
		if err != nil {
			t.Fatalf("MDTM %s: %v", p, err)
		}
		size, err := mlsd.FileSize(p)
		if err != nil {
			t.Fatalf("SIZE %s: %v", p, err)
		}
		record(f.name, "ftp MDTM+SIZE", size, mdtm, false)
	}

	const allViews = 8 // MDTM and SIZE are recorded as one
	for _, f := range files {
		got := views[f.name]
		if len(got) != allViews {
			t.Errorf("%s: seen by %d views, want %d: %v", f.name, len(got), allViews, got)
		}
		for name, v := range got {
			want := f.set
			ok := v.time.Equal(want)
			if v.list { // "Jan _2 15:04" within six months, "Jan _2  2006" before
				layout := "Jan _2 15:04"
				if time.Since(want) > 180*24*time.Hour {
					layout = "Jan _2  2006"
				}
				ok = v.time.UTC().Format(layout) == want.Format(layout)
			}
			if !ok || v.size != f.size {
				t.Errorf("%s: %s shows size %d time %v, want size %d time %v", f.name, name, v.size, v.time.UTC(), f.size, want)
			}
		}
	}
	if t.Failed() {
		t.Log(describeViews(views))
	}

	// The directory itself: S3 has no time for a prefix, so every view shows the same stand-in
	// (the Unix epoch), never a wrapped year-1 time (SFTP showed 2042).
	epoch := time.Unix(0, 0)
	dirViews := map[string]time.Time{}
	if fi, err := sc.Stat("/views"); err == nil {
		dirViews["sftp stat"] = fi.ModTime()
	}
	if fis, err := sc.ReadDir("/"); err == nil {
		for _, fi := range fis {
			if fi.Name() == "views" {
				dirViews["sftp readdir"] = fi.ModTime()
			}
		}
	}
	if e, err := mlsd.GetEntry("/views"); err == nil {
		dirViews["ftp MLST"] = e.Time
	}
	if es, err := mlsd.List("/"); err == nil {
		for _, e := range es {
			if e.Name == "views" {
				dirViews["ftp MLSD"] = e.Time
			}
		}
	}
	if len(dirViews) != 4 {
		t.Errorf("directory seen by %d views: %v", len(dirViews), dirViews)
	}
	for name, at := range dirViews {
		if !at.Equal(epoch) {
			t.Errorf("directory /views: %s shows %v, want %v", name, at.UTC(), epoch.UTC())
		}
	}
}

// view is what one client command showed of a file.
type view struct {
	size int64
	time time.Time
	list bool // LIST: minute precision for recent files, day for older ones
}

func (v view) String() string {
	return fmt.Sprintf("size %d time %s", v.size, v.time.UTC().Format(time.RFC3339))
}

func describeViews(views map[string]map[string]view) string {
	var b strings.Builder
	for file, vs := range views {
		fmt.Fprintf(&b, "%s:\n", file)
		for name, v := range vs {
			fmt.Fprintf(&b, "  %-14s %v\n", name, v)
		}
	}
	return b.String()
}

// TestOpenSSHDfThroughTheGateway: `df` reaches the store through every decorator the gateway
// puts around it (access, events, metrics) and shows an object store's room.
func TestOpenSSHDfThroughTheGateway(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	out := g.openSSH(t, t.TempDir(), "df\n")
	if !strings.Contains(out, "1099511627776            0 1099511627776 1099511627776           0%") {
		t.Errorf("df over the assembled gateway:\n%s", out)
	}
}
