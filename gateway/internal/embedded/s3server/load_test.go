package s3server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestConcurrentClients: 20 clients each put 20 files at once; every object is intact and
// produced exactly one change, within a bound that a global lock around bodies would miss.
func TestConcurrentClients(t *testing.T) {
	h := newHarness(t)
	const clients, files = 20, 20
	body := func(c, f int) []byte {
		r := rand.New(rand.NewPCG(uint64(c), uint64(f)))
		b := make([]byte, 1+r.IntN(256<<10))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients*files)
	for c := range clients {
		cl := newClient(h.url, testKey, testSecret)
		for f := range files {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := cl.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(testBucket),
					Key: aws.String(fmt.Sprintf("c%02d/f%02d", c, f)), Body: bytes.NewReader(body(c, f))})
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d uploads in %v", clients*files, elapsed)
	if elapsed > 60*time.Second {
		t.Errorf("%d small uploads took %v", clients*files, elapsed)
	}
	for c := range clients {
		for f := range files {
			if got := h.get(fmt.Sprintf("c%02d/f%02d", c, f)); got != string(body(c, f)) {
				t.Errorf("c%02d/f%02d differs", c, f)
			}
		}
	}
	seen := map[string]bool{}
	for _, ch := range h.takeChanges() {
		seen[ch.Key] = true
	}
	if len(seen) != clients*files {
		t.Errorf("%d distinct changes, want %d", len(seen), clients*files)
	}
	h.tmpEmpty()
}

// pattern is a seekable stream of n deterministic bytes that holds no buffer.
type pattern struct {
	seed, n, off int64
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n-p.off)]
	for i := range b {
		x := uint64(p.off+int64(i)) * uint64(p.seed|1) * 0x9E3779B97F4A7C15
		b[i] = byte(x >> 56)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func (p *pattern) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		p.off = off
	case io.SeekCurrent:
		p.off += off
	case io.SeekEnd:
		p.off = p.n + off
	}
	return p.off, nil
}

// TestLargeUploadBoundedMemory streams a 2 GiB multipart upload (4 parts in flight) through
// the server while sampling the heap of this process, which holds client and server: it must
// stay far below the object's size.
func TestLargeUploadBoundedMemory(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	// One pass over each body: no payload hash, no checksum (the server's MD5 still runs).
	c := newClient(h.url, testKey, testSecret, func(o *s3.Options) {
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
	})
	const partSize, nparts = 32 << 20, 64 // 2 GiB
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var max uint64
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- max
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				max = maxOf(max, ms.HeapInuse)
			}
		}
	}()

	start := time.Now()
	mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("big")})
	if err != nil {
		t.Fatal(err)
	}
	parts := make([]types.CompletedPart, nparts)
	sums := make([][]byte, nparts)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	errs := make(chan error, nparts)
	for i := range nparts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String("big"), UploadId: mp.UploadId,
				PartNumber: aws.Int32(int32(i + 1)), Body: &pattern{seed: int64(i), n: partSize}, ContentLength: aws.Int64(partSize)})
			if err != nil {
				errs <- err
				return
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			h := md5.New()
			io.Copy(h, &pattern{seed: int64(i), n: partSize})
			sums[i] = h.Sum(nil)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String("big"), UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	close(stop)
	max := <-peak
	t.Logf("2 GiB in %v; heap in use %d MiB before, peak %d MiB", elapsed.Round(time.Millisecond), before.HeapInuse>>20, max>>20)
	if max > 64<<20 {
		t.Errorf("heap in use peaked at %d MiB for a 2 GiB upload", max>>20)
	}

	whole := md5.New()
	for _, s := range sums {
		whole.Write(s)
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("big")})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`"%x-%d"`, whole.Sum(nil), nparts); aws.ToString(head.ETag) != want || aws.ToInt64(head.ContentLength) != partSize*nparts {
		t.Errorf("HEAD etag %s size %d, want %s", aws.ToString(head.ETag), aws.ToInt64(head.ContentLength), want)
	}
	// Spot-check bytes across a part boundary.
	get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("big"), Range: aws.String(fmt.Sprintf("bytes=%d-%d", 5*partSize-10, 5*partSize+9))})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(get.Body)
	get.Body.Close()
	want := make([]byte, 20)
	(&pattern{seed: 4, n: partSize, off: partSize - 10}).Read(want[:10])
	(&pattern{seed: 5, n: partSize}).Read(want[10:])
	if !bytes.Equal(got, want) {
		t.Errorf("bytes across parts 5/6 differ")
	}
	h.tmpEmpty()
}

// TestStalledUploadBlocksNobody: while one client is stuck in the middle of a body, uploads,
// reads and listings of other keys, and an upload of the same key, go on.
func TestStalledUploadBlocksNobody(t *testing.T) {
	h := newHarness(t)
	h.put("stalled", "old")
	conn := h.startRawPut(t, "/ferry/stalled", 8, "half")

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for i := range 5 {
		if _, err := h.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(fmt.Sprint("other", i)), Body: strings.NewReader("x")}); err != nil {
			t.Fatalf("put beside a stalled upload: %v", err)
		}
	}
	if _, err := h.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("stalled"), Body: strings.NewReader("newer")}); err != nil {
		t.Fatalf("put of the same key: %v", err)
	}
	if got := h.get("stalled"); got != "newer" {
		t.Errorf("same key while stalled: %q", got)
	}
	if _, err := h.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatal(err)
	}
	// The stalled client finishes: last writer wins.
	if _, err := io.WriteString(conn, "done"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stalled upload: %s", resp.Status)
	}
	if got := h.get("stalled"); got != "halfdone" {
		t.Errorf("after the stalled upload: %q", got)
	}
}

// startRawPut sends a signed PUT announcing size bytes and the first of them, and returns once
// the server is writing the body to a temp file.
func (h *harness) startRawPut(t *testing.T, path string, size int, first string) net.Conn {
	t.Helper()
	req := h.signedRequest(t, "PUT", path, nil, "UNSIGNED-PAYLOAD", http.Header{"Content-Length": {fmt.Sprint(size)}}, time.Now(), testSecret)
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var hdr strings.Builder
	fmt.Fprintf(&hdr, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", req.URL.RequestURI(), req.Host, size)
	for k, vs := range req.Header {
		if k != "Content-Length" {
			fmt.Fprintf(&hdr, "%s: %s\r\n", k, vs[0])
		}
	}
	hdr.WriteString("\r\n" + first)
	if _, err := io.WriteString(conn, hdr.String()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ents, _ := os.ReadDir(filepath.Join(h.dir, "tmp")); len(ents) > 0 {
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatal("the body never reached the server")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdownDrainsUploads(t *testing.T) {
	h := newHarness(t)
	conn := h.startRawPut(t, "/ferry/draining", 8, "half")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with an upload in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	io.WriteString(conn, "done")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("upload during shutdown: %s", resp.Status)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := h.srv.Disk().Stat(testBucket, "draining"); err != nil {
		t.Errorf("drained upload not stored: %v", err)
	}
	if n := len(h.takeChanges()); n != 1 {
		t.Errorf("%d changes, want 1", n)
	}
}

func TestShutdownDeadlineAbortsUploads(t *testing.T) {
	h := newHarness(t)
	h.startRawPut(t, "/ferry/cut", 8, "half")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown past its deadline: %v", err)
	}
	if _, err := h.srv.Disk().Stat(testBucket, "cut"); err == nil {
		t.Error("a cut upload was stored")
	}
	if n := len(h.takeChanges()); n != 0 {
		t.Errorf("%d changes from a cut upload", n)
	}
	h.tmpEmpty()
}

func maxOf(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}
