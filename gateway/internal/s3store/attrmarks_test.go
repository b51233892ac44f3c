package s3store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

func TestMarkEncoding(t *testing.T) {
	mode := fs.FileMode(0o751)
	tests := []struct {
		name  string
		mtime *time.Time
		mode  *fs.FileMode
	}{
		{"plain.csv", ptr(time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)), &mode},
		{"nanos", ptr(time.Date(2021, 3, 4, 5, 6, 7, 890, time.UTC)), nil},
		{"before 1970", ptr(time.Date(1969, 12, 31, 23, 59, 59, 500000000, time.UTC)), nil},
		{"far future", ptr(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)), nil},
		{"mode only ü %2f _ .", nil, &mode},
	}
	for _, tt := range tests {
		m := attrMark{version: objVersion{etag: "0123abcd-3", lm: 1700000000}, written: 42, mtime: tt.mtime, mode: tt.mode}
		key := "home/dir/" + tt.name
		k := m.encode(key)
		if !strings.HasPrefix(k, "home/dir/.ferry-attrs/") || !strings.HasSuffix(k, "/") {
			t.Errorf("%s: key %q is not a directory marker under the markers' prefix", tt.name, k)
		}
		fileKey, got, ok := splitMarkKey(k)
		if !ok || got.key != k || fileKey != key {
			t.Fatalf("%s: splitMarkKey(%q) = %q, %+v, %v", tt.name, k, fileKey, got, ok)
		}
		if got.version != m.version || got.written != m.written ||
			(tt.mtime == nil) != (got.mtime == nil) || (tt.mtime != nil && !got.mtime.Equal(*tt.mtime)) ||
			(tt.mode == nil) != (got.mode == nil) || (tt.mode != nil && *got.mode != *tt.mode) {
			t.Errorf("%s: round trip %+v -> %q -> %+v", tt.name, m, k, got)
		}
	}
	for _, bad := range []string{"zz.1_e_1_1__/", "6162.2_e_1_1__/", "6162.1_e_1_1__", "6162.1_e\"_1_1__/",
		"6162.1_e_x_1__/", "6162.1_e_1_1_5.x_/", "6162.1_e_1_1__9/", "6162", "6162.1_e_1_1___/",
		"6162/1_e_1_1__/", "6162.1_e_1_1__/x/"} {
		if _, _, ok := parseMark(bad); ok {
			t.Errorf("parseMark(%q) accepted it", bad)
		}
	}
	// Markers sort like the names they describe, which the listing's merge relies on.
	names := []string{"a", "a-b", "a.b", "a/", "ab", "a b", "-x", ".ferry", "~", "é", "a\x7f", "Z", "0"}
	byName := slices.Clone(names)
	sort.Strings(byName)
	byMark := slices.Clone(names)
	sort.Slice(byMark, func(i, j int) bool { return hexName(byMark[i])+"." < hexName(byMark[j])+"." })
	if !slices.Equal(byName, byMark) {
		t.Errorf("names sort as %q but their markers as %q", byName, byMark)
	}
}

func ptr[T any](v T) *T { return &v }

// TestListingTimeHasHeadPrecision: a listing's LastModified may carry milliseconds (AWS) where
// a HEAD has whole seconds; the listing is truncated so both views agree.
func TestListingTimeHasHeadPrecision(t *testing.T) {
	lm := time.Date(2024, 5, 6, 7, 8, 9, 987000000, time.UTC)
	page := &s3.ListObjectsV2Output{Contents: []s3types.Object{{Key: aws.String("p/f"), Size: aws.Int64(1),
		ETag: aws.String(`"abc"`), LastModified: &lm}}}
	var got []listed
	if err := forPage("p/", page, func(l listed) error { got = append(got, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].e.ModTime.Equal(lm.Truncate(time.Second)) || got[0].v != (objVersion{"abc", lm.Unix()}) {
		t.Errorf("listed %+v", got)
	}
}

// requests counts the HTTP requests an S3 client sends, by kind ("LIST", "HEAD", "PUT", ...).
type requests struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *requests) RoundTrip(req *http.Request) (*http.Response, error) {
	kind := req.Method
	switch q := req.URL.Query(); {
	case q.Has("list-type"):
		kind = "LIST"
	case q.Has("tagging"):
		kind += " tagging"
	}
	r.mu.Lock()
	r.n[kind]++
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *requests) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.n
	r.n = map[string]int{}
	return n
}

// countingClient is srv's client with every HTTP request counted.
func countingClient(srv *s3test.Server) (*s3.Client, *requests) {
	r := &requests{n: map[string]int{}}
	return s3.New(s3.Options{
		Region:       srv.Region,
		BaseEndpoint: aws.String(srv.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.Secret, ""),
		HTTPClient:   &http.Client{Transport: r},
	}), r
}

// TestTimeRequests counts what recorded times cost on the wire, against versitygw: listing a
// directory whose files carry none costs exactly its own pages (no marker request at all, even
// next to a directory full of markers); a directory with markers adds the markers' pages; a
// stat adds one LIST.
func TestTimeRequests(t *testing.T) {
	srv := s3test.Start(t)
	client, reqs := countingClient(srv)
	const pageSize, files = 100, 250 // three pages
	store := newStore(t, client, Config{Bucket: srv.Bucket, ListPageSize: pageSize})
	fsys := store.Home("", "home")
	ctx := t.Context()
	mtime := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, dir := range []string{"plain", "stamped"} {
		for i := range files {
			key := fmt.Sprintf("home/%s/f%04d", dir, i)
			if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: &key,
				Body: strings.NewReader(key)}); err != nil {
				t.Fatal(err)
			}
			if dir == "stamped" {
				if err := fsys.(storage.Setstater).SetStat(ctx, fmt.Sprintf("/%s/f%04d", dir, i), storage.Attrs{ModTime: &mtime}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	tests := []struct {
		what string
		do   func() error
		want map[string]int
	}{
		{"list without times", func() error { return wantListed(ctx, fsys, "/plain", files, nil) },
			map[string]int{"LIST": 3}},
		{"list with times", func() error { return wantListed(ctx, fsys, "/stamped", files, &mtime) },
			map[string]int{"LIST": 3 + 3}},
		{"stat without a time", func() error { _, err := fsys.Stat(ctx, "/plain/f0007"); return err },
			map[string]int{"HEAD": 1, "LIST": 1}},
		{"stat with a time", func() error {
			e, err := fsys.Stat(ctx, "/stamped/f0007")
			if err == nil && !e.ModTime.Equal(mtime) {
				err = fmt.Errorf("stat time %v, want %v", e.ModTime, mtime)
			}
			return err
		}, map[string]int{"HEAD": 1, "LIST": 1}},
		{"setstat replacing a time", func() error {
			return fsys.(storage.Setstater).SetStat(ctx, "/stamped/f0007", storage.Attrs{ModTime: &mtime})
		}, map[string]int{"HEAD": 1, "LIST": 1, "PUT": 1, "DELETE": 1}},
	}
	for _, tt := range tests {
		reqs.take()
		if err := tt.do(); err != nil {
			t.Fatalf("%s: %v", tt.what, err)
		}
		if got := reqs.take(); !mapsEqual(got, tt.want) {
			t.Errorf("%s: requests %v, want %v", tt.what, got, tt.want)
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// wantListed lists dir and checks it holds n files, all with time want (or none recorded).
func wantListed(ctx context.Context, fsys storage.FS, dir string, n int, want *time.Time) error {
	got := 0
	err := fsys.List(ctx, dir, func(e *storage.Entry) error {
		got++
		if want != nil && !e.ModTime.Equal(*want) {
			return fmt.Errorf("%s/%s listed with time %v, want %v", dir, e.Name, e.ModTime, *want)
		}
		if want == nil && e.ModTime.Before(time.Now().Add(-time.Hour)) {
			return fmt.Errorf("%s/%s listed with time %v, want LastModified", dir, e.Name, e.ModTime)
		}
		return nil
	})
	if err == nil && got != n {
		err = fmt.Errorf("listed %d entries of %s, want %d", got, dir, n)
	}
	return err
}

// TestListJoinPages merges markers into listings that span many small pages, with names that
// sort around each other and around ".ferry-attrs/" in every awkward way, including a first
// page made only of names before it (which costs one probe, and only then).
func TestListJoinPages(t *testing.T) {
	srv := s3test.Start(t)
	client, reqs := countingClient(srv)
	ctx := t.Context()
	mtime := time.Date(2018, 1, 2, 3, 4, 5, 0, time.UTC)
	names := []string{"!bang", "#hash", "-a", "-b", "-c", ".a", ".ferry", ".ferry-attrs-not", ".z",
		"a", "a-b", "a.b", "ab", "b", "sub/", "z z", "é"}
	for _, withTimes := range []bool{false, true} {
		dir := fmt.Sprintf("d%v", withTimes)
		store := newStore(t, client, Config{Bucket: srv.Bucket, ListPageSize: 3})
		fsys := store.Home("", "home")
		for i, n := range names {
			if strings.HasSuffix(n, "/") {
				if err := fsys.Mkdir(ctx, "/"+dir+"/"+strings.TrimSuffix(n, "/")); err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
				continue
			}
			put(t, fsys, "/"+dir+"/"+n, []byte(n))
			if withTimes && i%2 == 0 {
				if err := fsys.(storage.Setstater).SetStat(ctx, "/"+dir+"/"+n, storage.Attrs{ModTime: &mtime}); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Mkdir needs the parent: make sure "sub" exists now that files imply the directory.
		if err := fsys.Mkdir(ctx, "/"+dir+"/sub"); err != nil && !errors.Is(err, fs.ErrExist) {
			t.Fatal(err)
		}
		reqs.take()
		var got []*storage.Entry
		if err := fsys.List(ctx, "/"+dir, func(e *storage.Entry) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
		lists := reqs.take()["LIST"]
		var gotNames []string
		for _, e := range got {
			name := e.Name
			if e.Dir {
				gotNames = append(gotNames, name+"/")
				continue
			}
			gotNames = append(gotNames, name)
			st := mustSameViews(t, fsys, "/"+dir+"/"+name)
			if i := slices.Index(names, name); withTimes && i%2 == 0 != st.ModTime.Equal(mtime) {
				t.Errorf("%s/%s: time %v, set: %v", dir, name, st.ModTime, i%2 == 0)
			}
		}
		if !slices.Equal(gotNames, names) {
			t.Errorf("%s listed %q, want %q", dir, gotNames, names)
		}
		// The first page ("!bang", "#hash", "-a") is all before ".ferry-attrs/": one probe of
		// the markers decides, and when they exist it is their first page, not an extra one.
		want := pages(t, srv, "home/"+dir+"/", "/", 3)
		if withTimes {
			want += pages(t, srv, markDir("home/"+dir+"/"), "", 3)
		} else {
			want++
		}
		if lists != want {
			t.Errorf("%s: listing made %d LIST requests, want %d", dir, lists, want)
		}
	}
}

// pages counts the ListObjectsV2 pages of size n under prefix.
func pages(t *testing.T, srv *s3test.Server, prefix, delim string, n int32) int {
	t.Helper()
	in := &s3.ListObjectsV2Input{Bucket: &srv.Bucket, Prefix: &prefix, MaxKeys: aws.Int32(n)}
	if delim != "" {
		in.Delimiter = &delim
	}
	p := s3.NewListObjectsV2Paginator(srv.Client(), in)
	count := 0
	for p.HasMorePages() {
		if _, err := p.NextPage(t.Context()); err != nil {
			t.Fatal(err)
		}
		count++
	}
	return count
}

// TestMarkersEndWithTheVersion: a time set on a file applies to that object only; rewriting it
// from S3 (or through Ferry without a time) brings both views back to LastModified.
func TestMarkersEndWithTheVersion(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := t.Context()
	mtime := time.Date(2017, 7, 7, 7, 7, 7, 0, time.UTC)
	for _, how := range []string{"s3", "ferry"} {
		name := "/" + how
		put(t, e.fs, name, []byte("one"))
		if err := e.fs.(storage.Setstater).SetStat(ctx, name, storage.Attrs{ModTime: &mtime}); err != nil {
			t.Fatal(err)
		}
		if st, _ := e.fs.Stat(ctx, name); st == nil || !st.ModTime.Equal(mtime) {
			t.Fatalf("%s: stat after setstat %+v", name, st)
		}
		if how == "s3" {
			key := "home" + name
			if _, err := e.raw.PutObject(ctx, &s3.PutObjectInput{Bucket: &e.srv.Bucket, Key: &key,
				Body: strings.NewReader("two, from another tool")}); err != nil {
				t.Fatal(err)
			}
		} else {
			put(t, e.fs, name, []byte("two, no time"))
		}
		st := mustSameViews(t, e.fs, name)
		if st.ModTime.Equal(mtime) || st.ModTime.Before(time.Now().Add(-time.Hour)) {
			t.Errorf("%s: after the rewrite the time is %v, want its new LastModified", name, st.ModTime)
		}
	}
}

// mustSameViews stats name and finds it in its directory's listing; the two must agree.
func mustSameViews(t *testing.T, fsys storage.FS, name string) *storage.Entry {
	t.Helper()
	st, err := fsys.Stat(t.Context(), name)
	if err != nil {
		t.Fatalf("stat %s: %v", name, err)
	}
	dir := name[:strings.LastIndex(name, "/")+1]
	var le *storage.Entry
	if err := fsys.List(t.Context(), dir, func(e *storage.Entry) error {
		if dir+e.Name == name {
			le = e
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if le == nil || le.Size != st.Size || !le.ModTime.Equal(st.ModTime) || le.Mode != st.Mode {
		t.Fatalf("%s: stat %+v, listing %+v", name, st, le)
	}
	return st
}

// TestTimesOnReplicas: what one replica records, the other shows in every view at once, and
// after concurrent settings of one file both replicas show the same winner.
func TestTimesOnReplicas(t *testing.T) {
	srv := s3test.Start(t)
	a := newStore(t, srv.Client(), Config{Bucket: srv.Bucket}).Home("", "shared")
	b := newStore(t, srv.Client(), Config{Bucket: srv.Bucket}).Home("", "shared")
	ctx := t.Context()
	put(t, a, "/f", []byte("data"))
	t1 := time.Date(2016, 6, 6, 6, 6, 6, 0, time.UTC)
	if err := a.(storage.Setstater).SetStat(ctx, "/f", storage.Attrs{ModTime: &t1}); err != nil {
		t.Fatal(err)
	}
	if st := mustSameViews(t, b, "/f"); !st.ModTime.Equal(t1) {
		t.Fatalf("replica b sees time %v, want %v", st.ModTime, t1)
	}
	mode := fs.FileMode(0o600)
	if err := b.(storage.Setstater).SetStat(ctx, "/f", storage.Attrs{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	if st := mustSameViews(t, a, "/f"); !st.ModTime.Equal(t1) || st.Mode != mode {
		t.Fatalf("replica a sees %v %v, want %v %v", st.ModTime, st.Mode, t1, mode)
	}
	for round := range 5 {
		var wg sync.WaitGroup
		for i, r := range []storage.FS{a, b} {
			wg.Go(func() {
				mt := time.Date(2000+round, 1, 1, 0, 0, i, 0, time.UTC)
				if err := r.(storage.Setstater).SetStat(ctx, "/f", storage.Attrs{ModTime: &mt}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		sa, sb := mustSameViews(t, a, "/f"), mustSameViews(t, b, "/f")
		if !sa.ModTime.Equal(sb.ModTime) || sa.ModTime.Year() != 2000+round {
			t.Fatalf("round %d: replicas disagree or kept an old time: %v / %v", round, sa.ModTime, sb.ModTime)
		}
	}
}

// TestReservedMarkerName: no client path reaches the markers, and listings never show them.
func TestReservedMarkerName(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := t.Context()
	put(t, e.fs, "/d/f", []byte("x"))
	mtime := time.Date(2015, 5, 5, 5, 5, 5, 0, time.UTC)
	if err := e.fs.(storage.Setstater).SetStat(ctx, "/d/f", storage.Attrs{ModTime: &mtime}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/.ferry-attrs", "/d/.ferry-attrs", "/d/.ferry-attrs/66", "d/x/../.ferry-attrs/y"} {
		_, err := e.fs.Stat(ctx, p)
		wantIs(t, "stat "+p, err, fs.ErrPermission)
		wantIs(t, "mkdir "+p, e.fs.Mkdir(ctx, p), fs.ErrPermission)
		_, err = e.fs.Create(ctx, p, storage.CreateOptions{})
		wantIs(t, "create "+p, err, fs.ErrPermission)
		wantIs(t, "rename onto "+p, e.fs.Rename(ctx, "/d/f", p), fs.ErrPermission)
		wantIs(t, "list "+p, e.fs.List(ctx, p, func(*storage.Entry) error { return nil }), fs.ErrPermission)
	}
	var got []string
	if err := e.fs.List(ctx, "/d", func(en *storage.Entry) error { got = append(got, en.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"f"}) {
		t.Errorf("listing of /d = %q, want only f", got)
	}
}

func wantIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: %v, want %v", what, err, target)
	}
}

// TestMarkersLeaveWithTheirFile: Remove and Rename take a file's markers along; markers of a
// file deleted behind Ferry's back do not keep its directory from being removed.
func TestMarkersLeaveWithTheirFile(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := t.Context()
	ss := e.fs.(storage.Setstater)
	mtime := time.Date(2014, 4, 4, 4, 4, 4, 0, time.UTC)
	if err := e.fs.Mkdir(ctx, "/d"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"/d/removed", "/d/renamed", "/d/gone-behind"} {
		put(t, e.fs, n, []byte(n))
		if err := ss.SetStat(ctx, n, storage.Attrs{ModTime: &mtime}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.fs.Remove(ctx, "/d/removed"); err != nil {
		t.Fatal(err)
	}
	if err := e.fs.Rename(ctx, "/d/renamed", "/moved"); err != nil {
		t.Fatal(err)
	}
	if st := mustSameViews(t, e.fs, "/moved"); !st.ModTime.Equal(mtime) {
		t.Errorf("renamed file has time %v, want %v", st.ModTime, mtime)
	}
	if _, err := e.raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &e.srv.Bucket, Key: aws.String("home/d/gone-behind")}); err != nil {
		t.Fatal(err)
	}
	wantMarkers(t, e, "home/d/", 1) // gone-behind's, now stale
	if err := e.fs.Rmdir(ctx, "/d"); err != nil {
		t.Fatalf("rmdir of a directory holding only a stale marker: %v", err)
	}
	wantMarkers(t, e, "home/d/", 0)
	wantMarkers(t, e, "home/", 1) // /moved's
}

func wantMarkers(t *testing.T, e *env, dir string, n int) {
	t.Helper()
	prefix := markDir(dir)
	out, err := e.raw.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: &e.srv.Bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != n {
		t.Errorf("markers under %s: %q, want %d", prefix, keysOf(out.Contents), n)
	}
}
