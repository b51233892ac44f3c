package s3store

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
)

// TestUploadLeavesNothing covers every way an upload can end without committing: no object,
// not even an empty one, and no pending multipart upload.
func TestUploadLeavesNothing(t *testing.T) {
	e := newEnv(t, Config{Concurrency: 2})
	injected := errors.New("injected part failure")
	tests := []struct {
		name  string
		size  int
		setup func()
		end   func(u storage.Upload, cancel context.CancelFunc) error
	}{
		{name: "abort-single", size: 100, end: func(u storage.Upload, _ context.CancelFunc) error {
			_ = u.Abort(errors.New("client error"))
			return u.Close()
		}},
		{name: "abort-multipart", size: 3*testPartSize + 1, end: func(u storage.Upload, _ context.CancelFunc) error {
			_ = u.Abort(nil)
			return u.Close()
		}},
		{name: "cancel-multipart", size: 2*testPartSize + 1, end: func(u storage.Upload, cancel context.CancelFunc) error {
			cancel()
			return u.Close()
		}},
		{name: "cancel-without-close", size: 2*testPartSize + 1, end: func(u storage.Upload, cancel context.CancelFunc) error {
			cancel() // the front end never calls Close or Abort: the store aborts by itself
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				out, err := e.raw.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &e.srv.Bucket})
				if err == nil && len(out.Uploads) == 0 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			return u.Close()
		}},
		{name: "part-fails", size: 4*testPartSize + 1,
			setup: func() {
				e.spy.failPart = func(n int32) error {
					if n == 2 {
						return injected
					}
					return nil
				}
			},
			end: func(u storage.Upload, _ context.CancelFunc) error { return u.Close() }},
		{name: "complete-fails", size: 2*testPartSize + 1,
			setup: func() { e.spy.failComplete = injected },
			end:   func(u storage.Upload, _ context.CancelFunc) error { return u.Close() }},
		// S3 started the multipart upload but its answer never arrived: the store never
		// learned the id (CI's fault test once left such an upload pending).
		{name: "create-answer-lost", size: 2*testPartSize + 1,
			setup: func() { e.spy.loseCreate = injected },
			end:   func(u storage.Upload, _ context.CancelFunc) error { return u.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.spy.failPart, e.spy.failComplete, e.spy.loseCreate = nil, nil, nil
			if tt.setup != nil {
				tt.setup()
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			name := "/" + tt.name
			u, err := e.fs.Create(ctx, name, storage.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			data := randBytes(t, tt.size)
			for off := 0; off < len(data); off += 256 << 10 {
				if _, err := u.Write(data[off:min(len(data), off+256<<10)]); err != nil {
					break // a failed part shows up here or at Close
				}
			}
			if err := tt.end(u, cancel); err == nil {
				t.Fatal("close succeeded")
			}
			e.noLeftovers(t, "home"+name)
			if _, err := e.fs.Stat(t.Context(), name); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("stat after failure: %v", err)
			}
		})
	}
	e.spy.failPart, e.spy.failComplete, e.spy.loseCreate = nil, nil, nil
}

// TestCreateWithCancelledContext: a request already cancelled when Create runs (a client gone
// during the open) aborts at once. The abort runs on its own goroutine as Create returns; it once
// raced Create's setup and crashed the gateway (CI caught it). 20,000 tries made it fail every run before the fix.
func TestCreateWithCancelledContext(t *testing.T) {
	e := newEnv(t, Config{Concurrency: 2})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for i := range 20000 {
		u, err := e.fs.Create(ctx, fmt.Sprintf("/gone-%d", i), storage.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = u.Write([]byte("x"))
		if err := u.Close(); err == nil {
			t.Fatalf("close %d succeeded", i)
		}
	}
	n := 0
	if err := e.fs.List(t.Context(), "/", func(*storage.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d objects after cancelled uploads", n)
	}
}

// TestWriteAfterPartFailure checks that a failed part stops the upload quickly: Write returns
// the error instead of buffering the rest of the file.
func TestWriteAfterPartFailure(t *testing.T) {
	e := newEnv(t, Config{Concurrency: 2})
	injected := errors.New("injected part failure")
	e.spy.failPart = func(int32) error { return injected }
	u, err := e.fs.Create(t.Context(), "/f", storage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	written := 0
	var werr error
	for written < 100*testPartSize {
		var n int
		n, werr = u.Write(chunk)
		written += n
		if werr != nil {
			break
		}
	}
	if !errors.Is(werr, injected) {
		t.Fatalf("write error %v, want the part's", werr)
	}
	if written > 5*testPartSize {
		t.Errorf("accepted %d bytes after the first part failed", written)
	}
	start := time.Now()
	if _, err := u.Write(chunk); !errors.Is(err, injected) {
		t.Errorf("next write: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("write after failure took %v", d)
	}
	if err := u.Close(); !errors.Is(err, injected) {
		t.Errorf("close: %v", err)
	}
	e.noLeftovers(t, "home/f")
}

// TestUploadConcurrencyBound checks the memory bound: never more than Concurrency parts in
// flight, and a big upload still assembles correctly from out-of-order part completions.
func TestUploadConcurrencyBound(t *testing.T) {
	e := newEnv(t, Config{Concurrency: 3})
	data := randBytes(t, 9*testPartSize+123)
	put(t, e.fs, "/big", data)
	if e.spy.maxParts > 3 || e.spy.maxParts < 2 {
		t.Errorf("max parts in flight %d, want 2..3", e.spy.maxParts)
	}
	if got := e.spy.n("UploadPart"); got != 10 {
		t.Errorf("%d parts, want 10", got)
	}
	mustEqual(t, "big", get(t, e.fs, "/big"), data)
}

// TestObjectAttributes checks where the attributes end up in S3: identity and SHA-256 as
// metadata for a single PutObject, identity metadata plus a SHA-256 tag for multipart, and the
// mode and time set on the open file in one attribute marker next to the object.
func TestObjectAttributes(t *testing.T) {
	e := newEnv(t, Config{})
	opts := storage.CreateOptions{User: "dïana", Protocol: "sftp", ClientAddr: "10.0.0.1:22", TransferID: "tx-1"}
	mode := fs.FileMode(0o600)
	mtime := time.Date(2022, 2, 2, 2, 2, 2, 2, time.UTC)
	for _, size := range []int{10, 2*testPartSize + 10} {
		name := fmt.Sprintf("/obj-%d.json", size)
		data := randBytes(t, size)
		u, err := e.fs.Create(t.Context(), name, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := u.Write(data); err != nil {
			t.Fatal(err)
		}
		u.(storage.AttrRecorder).SetAttrs(storage.Attrs{Mode: &mode, ModTime: &mtime})
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
		key := "home" + name
		head, err := e.raw.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &e.srv.Bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		tags, err := e.raw.GetObjectTagging(t.Context(), &s3.GetObjectTaggingInput{Bucket: &e.srv.Bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		tagMap := map[string]string{}
		for _, tg := range tags.TagSet {
			tagMap[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		if decodeMeta(head.Metadata[attrUser]) != opts.User || head.Metadata[attrTransferID] != "tx-1" ||
			head.Metadata[attrClient] != opts.ClientAddr || head.Metadata[attrProtocol] != "sftp" {
			t.Errorf("%s: identity metadata %v", name, head.Metadata)
		}
		if ct := aws.ToString(head.ContentType); ct != "application/json" {
			t.Errorf("%s: content type %q", name, ct)
		}
		where := head.Metadata
		if size > testPartSize {
			where = tagMap
			if len(head.Metadata[attrSHA256]) != 0 {
				t.Errorf("%s: multipart object has sha256 metadata", name)
			}
		} else if len(tagMap) != 0 {
			t.Errorf("%s: single-part object has tags %v", name, tagMap)
		}
		if where[attrSHA256] != hexSum(data) || len(where) > 5 {
			t.Errorf("%s: attributes %v", name, where)
		}
		prefix := markPrefix(key)
		marks, err := e.raw.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: &e.srv.Bucket, Prefix: &prefix})
		if err != nil {
			t.Fatal(err)
		}
		wantMark := fmt.Sprintf("_%s_%d_", strings.Trim(aws.ToString(head.ETag), `"`), head.LastModified.Unix())
		if len(marks.Contents) != 1 || !strings.Contains(aws.ToString(marks.Contents[0].Key), wantMark) ||
			!strings.HasSuffix(aws.ToString(marks.Contents[0].Key), "_1643767322.000000002_600/") {
			t.Errorf("%s: attribute markers %v, want one naming %s", name, keysOf(marks.Contents), wantMark)
		}
		// Stat reads them back, asking for tags only when needed.
		e.spy.reset()
		st, err := e.fs.Stat(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if st.SHA256 != hexSum(data) || st.Mode != mode || !st.ModTime.Equal(mtime) {
			t.Errorf("%s: stat %+v", name, st)
		}
		wantTagCalls := 0
		if size > testPartSize {
			wantTagCalls = 1
		}
		if got := e.spy.n("GetObjectTagging"); got != wantTagCalls {
			t.Errorf("%s: stat made %d GetObjectTagging calls, want %d", name, got, wantTagCalls)
		}
	}
}

func keysOf(objs []s3types.Object) []string {
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = aws.ToString(o.Key)
	}
	return keys
}

// TestSetStatKeepsObject checks SetStat leaves the object alone: same ETag, same
// LastModified, tags set by others kept (no copy, so no new Object Created event).
func TestSetStatKeepsObject(t *testing.T) {
	e := newEnv(t, Config{})
	put(t, e.fs, "/f", []byte("data"))
	key := "home/f"
	if _, err := e.raw.PutObjectTagging(t.Context(), &s3.PutObjectTaggingInput{Bucket: &e.srv.Bucket, Key: &key,
		Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String("owner"), Value: aws.String("ops")}}}}); err != nil {
		t.Fatal(err)
	}
	before, err := e.raw.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &e.srv.Bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // LastModified has second resolution
	mode := fs.FileMode(0o755)
	if err := e.fs.(storage.Setstater).SetStat(t.Context(), "/f", storage.Attrs{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	after, err := e.raw.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &e.srv.Bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(after.ETag) != aws.ToString(before.ETag) || !aws.ToTime(after.LastModified).Equal(aws.ToTime(before.LastModified)) {
		t.Errorf("setstat rewrote the object: %v %v -> %v %v", before.ETag, before.LastModified, after.ETag, after.LastModified)
	}
	tags, err := e.store.Home("", "home").(*homeFS).tags(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 1 || tags["owner"] != "ops" {
		t.Errorf("tags after setstat: %v", tags)
	}
	if st, _ := e.fs.Stat(t.Context(), "/f"); st == nil || st.Mode != mode {
		t.Errorf("stat after setstat: %+v", st)
	}
}

// TestPartMemoryPooledAndReleased: part blocks come back to the pool and the next upload reuses
// them (no garbage per part), and once an upload ends, committed or aborted, it holds no
// transfer memory.
func TestPartMemoryPooledAndReleased(t *testing.T) {
	mem, err := transfermem.New(transfermem.Config{Limit: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{PartSize: testPartSize, Memory: mem})
	// One upload holds at most Concurrency+1 parts at once; three in a row stay within that
	// only if each reuses the blocks the earlier ones gave back (without the pool they would
	// need about three times as much). How many the first needed depends on timing: it is not
	// a bound for the others.
	bound := int64(e.store.cfg.Concurrency+1) * testPartSize
	for i, abort := range []bool{false, false, true} {
		u, err := e.fs.Create(t.Context(), "/big", storage.CreateOptions{User: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		data := randBytes(t, 3*testPartSize+5)
		if _, err := u.Write(data); err != nil {
			t.Fatal(err)
		}
		if abort {
			err = u.Abort(nil)
		} else {
			err = u.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		if n := mem.Reserved(); n != 0 {
			t.Errorf("abort=%v: %d bytes still reserved after the upload ended", abort, n)
		}
		if !abort {
			mustEqual(t, "object", get(t, e.fs, "/big"), data)
		}
		// An aborted upload's blocks are dropped, not pooled (the transport may still read them).
		if got := mem.Allocated(); got == 0 && !abort || got > bound {
			t.Errorf("after upload %d, %d bytes allocated, want some (pooled) and at most one upload's (concurrency+1) parts, %d", i, got, bound)
		}
	}
}

// A write that needs part memory while the budget is spent waits (back-pressure); it goes on
// when memory comes back within the wait, and otherwise fails as busy, leaving nothing behind.
func TestUploadWaitsForPartMemory(t *testing.T) {
	mem, err := transfermem.New(transfermem.Config{Limit: 2 * testPartSize, Wait: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{PartSize: testPartSize, Memory: mem})
	start := func(name string) storage.Upload {
		u, err := e.fs.Create(t.Context(), name, storage.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := u.Write([]byte(name)); err != nil { // reserves a whole part
			t.Fatal(err)
		}
		return u
	}
	a, b := start("/a"), start("/b")
	c, err := e.fs.Create(t.Context(), "/c", storage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := c.Write([]byte("c")); !errors.Is(err, storage.ErrBusy) {
		t.Fatalf("write without memory: %v, want storage.ErrBusy", err)
	}
	if d := time.Since(t0); d < 400*time.Millisecond {
		t.Fatalf("failed after %v, before waiting", d)
	}
	if err := c.Close(); err == nil {
		t.Fatal("an upload that could not get memory committed")
	}
	// Memory that comes back in time lets a waiting write through.
	d, err := e.fs.Create(t.Context(), "/d", storage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, func() { a.Close() })
	if _, err := d.Write([]byte("/d")); err != nil {
		t.Fatalf("write after memory came back: %v", err)
	}
	for _, u := range []storage.Upload{b, d} {
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"/a", "/b", "/d"} {
		mustEqual(t, name, get(t, e.fs, name), []byte(name))
	}
	if _, err := e.fs.Stat(t.Context(), "/c"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat of the refused upload: %v", err)
	}
	if mem.Reserved() != 0 {
		t.Fatalf("%d bytes still reserved", mem.Reserved())
	}
}

// Multipart uploads get a whole-object CRC32 (not S3's default CRC64NVME, which Go computes in
// software when the SDK checks a GET): HEAD shows it, and it is the CRC32 of the content.
func TestMultipartObjectsHaveFullObjectCRC32(t *testing.T) {
	e := newEnv(t, Config{PartSize: testPartSize})
	for _, size := range []int{1000, 2*testPartSize + 7} {
		data := randBytes(t, size)
		put(t, e.fs, "/f", data)
		key := "home/f"
		out, err := e.raw.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &e.srv.Bucket, Key: &key, ChecksumMode: s3types.ChecksumModeEnabled})
		if err != nil {
			t.Fatal(err)
		}
		var sum [4]byte
		binary.BigEndian.PutUint32(sum[:], crc32.ChecksumIEEE(data))
		want := base64.StdEncoding.EncodeToString(sum[:])
		if got := aws.ToString(out.ChecksumCRC32); got != want || out.ChecksumType != s3types.ChecksumTypeFullObject || out.ChecksumCRC64NVME != nil {
			t.Errorf("%d bytes: checksum crc32 %q type %q crc64nvme %v; want crc32 %q, FULL_OBJECT, no crc64nvme",
				size, got, out.ChecksumType, aws.ToString(out.ChecksumCRC64NVME), want)
		}
		mustEqual(t, "read back", get(t, e.fs, "/f"), data)
	}
}
