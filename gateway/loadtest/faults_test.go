package loadtest

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool/faultproxy"
)

// TestS3Faults drives SFTP and FTP uploads and downloads through the real gateway while a proxy
// between it and versitygw injects S3's faults at random: 503 SlowDown, 500, resets in the
// middle of a request body and of a response body (after S3 acted: the answer to a PutObject
// or a CompleteMultipartUpload is lost), added latency, requests that are never answered and
// GET bodies that stop halfway. One file in ten is doomed: S3 refuses its writes on every
// attempt, so its upload must fail. Every upload must either land byte-exact or fail visibly
// with no object and no pending multipart upload; every download must be byte-exact or fail
// visibly; the gateway must stay healthy. The figures are printed (go test -v).
func TestS3Faults(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the ferry binary, versitygw and a fault proxy")
	}
	const (
		workers = 8 // users; 4 on SFTP, 4 on FTP
		uploads = 200
		seed    = 20261205
	)
	e := Start(t, Options{Users: workers, Proxy: true, Seed: seed, StallTimeout: 2 * time.Second})
	notProbe := func(r faultproxy.Request) bool { return r.Op != "HeadBucket" }
	doomed := func(r faultproxy.Request) bool { return strings.Contains(r.Key, "doomed-") }
	e.Proxy.SetRules(
		faultproxy.Rule{Name: "doomed: writes refused", Kind: faultproxy.SlowDown, Match: func(r faultproxy.Request) bool {
			return doomed(r) && (r.Op == "PutObject" || r.Op == "UploadPart" && strings.Contains(r.Key, "-part"))
		}},
		faultproxy.Rule{Name: "doomed: completion fails", Kind: faultproxy.InternalError, Op: "CompleteMultipartUpload", Match: doomed},
		faultproxy.Rule{Kind: faultproxy.SlowDown, Rate: 0.03, Match: notProbe},
		faultproxy.Rule{Kind: faultproxy.InternalError, Rate: 0.02, Match: notProbe},
		faultproxy.Rule{Kind: faultproxy.ResetRequest, Rate: 0.015, Match: func(r faultproxy.Request) bool { return notProbe(r) && r.Size > 0 }},
		faultproxy.Rule{Kind: faultproxy.ResetResponse, Rate: 0.02, Match: notProbe},
		faultproxy.Rule{Kind: faultproxy.Latency, Rate: 0.05, Delay: 150 * time.Millisecond},
		faultproxy.Rule{Kind: faultproxy.Stall, Rate: 0.004, Delay: 20 * time.Second, Match: notProbe},
		faultproxy.Rule{Kind: faultproxy.StallBody, Op: "GetObject", Rate: 0.02, Delay: 20 * time.Second},
	)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	tally := NewTally()
	type file struct {
		name, key string
		data      []byte
		landed    bool
	}
	var mu sync.Mutex
	files := make([][]*file, workers)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		user := e.Users[w]
		proto := "sftp"
		var c Client = &SFTPClient{Addr: e.SFTP, User: user, From: Partner(w)}
		if w >= workers/2 {
			proto = "ftp"
			c = &FTPClient{Addr: e.FTP, User: user, From: Partner(w)}
		}
		wg.Go(func() {
			defer c.Close()
			for i := w; i < uploads; i += workers {
				if ctx.Err() != nil {
					return
				}
				size, name := sizeOf(i), fmt.Sprintf("f-%03d.bin", i)
				if i%10 == 9 { // doomed: small (PutObject), large (a part), large (the completion)
					name = fmt.Sprintf("doomed-%03d%s.bin", i, [...]string{"", "-part", "-complete"}[i/10%3])
					size = [...]int{40 << 10, 7 << 20, 7 << 20}[i/10%3]
				}
				f := &file{name: name, key: "home/" + user + "/" + name, data: Data(uint64(seed+i), size)}
				err := c.Upload(name, f.data)
				o, detail := e.JudgeUpload(ctx, f.key, f.data, err)
				tally.Add(proto+" upload", o, err, detail)
				f.landed = o == Landed
				mu.Lock()
				files[w] = append(files[w], f)
				mu.Unlock()
			}
			// Then read back what landed, through the same faults.
			for _, f := range files[w] {
				if ctx.Err() != nil {
					return
				}
				if !f.landed || strings.HasPrefix(f.name, "f-") && len(f.data) < 1<<20 && f.name[4]%2 == 0 {
					continue // half the small ones are enough
				}
				got, err := c.Download(f.name)
				switch {
				case err != nil:
					tally.Add(proto+" download", FailedVisibly, err, "")
				case string(got) != string(f.data):
					tally.Add(proto+" download", Corrupted, nil, fmt.Sprintf("%s: got %d bytes, want %d", f.key, len(got), len(f.data)))
				default:
					tally.Add(proto+" download", Landed, nil, "")
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		t.Errorf("the transfers did not finish within the test's 150s bound")
	}
	stats := e.Proxy.Stats()
	e.Proxy.SetRules() // faults off: judge what is left, and that the gateway still serves

	// Aborts finish before the client hears the failure, but give stragglers a moment.
	var pending []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		if pending, err = e.PendingUploads(ctx); err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	retriesSDK, err := e.Metric(ctx, "ferry_s3_retries_total", nil)
	if err != nil {
		t.Fatal(err)
	}
	s3Errors, _ := e.Metric(ctx, "ferry_s3_errors_total", nil)

	t.Logf("S3 faults: %d transfers in %s\n%s", tally.Total(-1), elapsed.Round(time.Millisecond), tally.Report())
	t.Logf("tried %d, landed %d, failed visibly %d, corrupted %d, partial objects %d (+ %d pending multipart uploads)",
		tally.Total(-1), tally.Total(Landed), tally.Total(FailedVisibly), tally.Total(Corrupted), tally.Total(Partial), len(pending))
	t.Logf("retries spent: %d by the SDK (as the proxy saw them, amz-sdk-request attempt > 1), %.0f counted by the gateway (ferry_s3_retries_total); %.0f S3 calls failed after their retries (ferry_s3_errors_total)",
		stats.Retries, retriesSDK, s3Errors)
	t.Logf("proxy: %d requests, %d faults: %s", stats.Requests, stats.Faults, formatCounts(stats.ByRule))

	for _, b := range tally.Bad() {
		t.Errorf("%s", b)
	}
	if len(pending) > 0 {
		t.Errorf("multipart uploads left pending: %v", pending)
	}
	if n := tally.Total(-1); n < 300 {
		t.Errorf("only %d transfers were tried, want several hundred", n)
	}
	if n := tally.Total(FailedVisibly); n < uploads/10 {
		t.Errorf("%d transfers failed visibly, want at least the %d doomed uploads", n, uploads/10)
	}
	if n := tally.Total(Landed); n < tally.Total(-1)*2/3 {
		t.Errorf("only %d of %d transfers landed: the SDK's retries should carry most through these rates", n, tally.Total(-1))
	}
	if stats.Faults < 100 || stats.ByKind[faultproxy.ResetResponse] == 0 || stats.ByKind[faultproxy.Stall] == 0 {
		t.Errorf("the proxy injected too few faults to mean anything: %+v", stats.ByKind)
	}
	// The gateway counts a retry when the SDK decides on it; an attempt cancelled before its
	// request reached the proxy (its upload already failed) is counted but never seen there.
	if retriesSDK == 0 || math.Abs(float64(stats.Retries)-retriesSDK) > max(3, retriesSDK/20) {
		t.Errorf("retries: proxy saw %d, gateway counted %.0f", stats.Retries, retriesSDK)
	}

	// Still healthy: ready, and a clean round trip on each protocol.
	if code, body := httpGet(e.Health, "/readyz"); code != 200 {
		t.Errorf("/readyz after the faults = %d %q", code, body)
	}
	for _, c := range []Client{&SFTPClient{Addr: e.SFTP, User: e.Users[0]}, &FTPClient{Addr: e.FTP, User: e.Users[workers-1]}} {
		data := Data(1, 6<<20)
		if err := c.Upload("after.bin", data); err != nil {
			t.Errorf("upload after the faults: %v", err)
		} else if got, err := c.Download("after.bin"); err != nil || string(got) != string(data) {
			t.Errorf("download after the faults: %d bytes, %v", len(got), err)
		}
		c.Close()
	}
}

func sizeOf(i int) int {
	const part = 5 << 20
	switch i % 10 {
	case 0, 1, 2, 3:
		return 1 + (i*7919)%(200<<10) // small: one PutObject
	case 4:
		return part - 1 // one PutObject, as large as one gets
	case 5:
		return part // exactly one part: still one PutObject
	case 6:
		return part + 1 // two parts, the last of one byte
	}
	return 2*part + 1 + (i*104729)%part // 2-3 parts
}

func formatCounts[K ~string](m map[K]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[K(k)]))
	}
	return strings.Join(parts, ", ")
}
