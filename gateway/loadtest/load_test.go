package loadtest

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/testtool/faultproxy"
)

// Load test bounds: 200 sessions for a fixed time, then the judgement.
const (
	loadSessions = 200 // half SFTP, half FTP
	loadUsers    = 20
	loadFor      = 30 * time.Second
	// loadRSSLimit bounds the gateway's resident memory: 200 sessions each with at most one
	// file of at most 1 MiB in flight (below the part size, an upload buffers the file), plus
	// the process itself, the SSH and TLS state of 200 sessions, and the soft memory limit's
	// slack.
	loadRSSLimit = 512 << 20
	// goroutineSlack is how far above the idle count go_goroutines may stay once every client
	// has gone (idle HTTP connections to S3 and their timers take a while to close).
	goroutineSlack = 20
)

// TestLoad runs 200 concurrent sessions, SFTP and FTP mixed, against the real gateway for a
// fixed time, each uploading small and medium files and reading each back, with S3 faults
// injected at a low rate. Everything that landed must be byte-exact (S3's ETag is the MD5 of a
// single-part object; every download is compared), nothing partial may remain, the gateway's
// RSS must stay under loadRSSLimit, and its goroutines must return to the idle count once the
// clients are gone. The figures are printed (go test -v; `make loadtest`).
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 200 sessions against the ferry binary")
	}
	e := Start(t, Options{Users: loadUsers, Proxy: true, Seed: 7, StallTimeout: 5 * time.Second})
	notProbe := func(r faultproxy.Request) bool { return r.Op != "HeadBucket" }
	e.Proxy.SetRules(
		faultproxy.Rule{Kind: faultproxy.SlowDown, Rate: 0.01, Match: notProbe},
		faultproxy.Rule{Kind: faultproxy.InternalError, Rate: 0.005, Match: notProbe},
		faultproxy.Rule{Kind: faultproxy.ResetResponse, Rate: 0.005, Match: notProbe},
		faultproxy.Rule{Kind: faultproxy.Latency, Rate: 0.02, Delay: 100 * time.Millisecond},
	)
	ctx := context.Background()
	idleGoroutines, err := e.Metric(ctx, "go_goroutines", nil)
	if err != nil {
		t.Fatal(err)
	}

	// A few blobs of each size; each file gets a unique 16-byte head, so no two are alike.
	small := [][]byte{Data(1, 4<<10), Data(2, 32<<10), Data(3, 100<<10)}
	medium := [][]byte{Data(4, 512<<10), Data(5, 1<<20)}

	var (
		mu       sync.Mutex
		sent     = map[string]string{} // key -> MD5 of what a client saw land
		failed   = map[string]bool{}   // keys whose upload the client saw fail
		tally    = NewTally()
		loggedIn atomic.Int64
		peakRSS  atomic.Int64
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // RSS every 200ms
		defer close(sampled)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := e.Proc.RSS(); err == nil && rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	start := time.Now()
	deadline := start.Add(loadFor)
	var wg sync.WaitGroup
	for s := range loadSessions {
		user := e.Users[s%loadUsers]
		proto := "sftp"
		var c Client = &SFTPClient{Addr: e.SFTP, User: user, From: Partner(s)}
		if s%2 == 1 {
			proto = "ftp"
			c = &FTPClient{Addr: e.FTP, User: user, From: Partner(s)}
		}
		wg.Go(func() {
			defer c.Close()
			for i := 0; time.Now().Before(deadline); i++ {
				blob := small[i%len(small)]
				if i%3 == 2 {
					blob = medium[(i/3)%len(medium)]
				}
				data := append([]byte(nil), blob...)
				binary.BigEndian.PutUint64(data[0:], uint64(s))
				binary.BigEndian.PutUint64(data[8:], uint64(i))
				name := fmt.Sprintf("s%03d-%05d.bin", s, i)
				key := "home/" + user + "/" + name
				err := c.Upload(name, data)
				if i == 0 && err == nil {
					loggedIn.Add(1)
				}
				mu.Lock()
				if err == nil {
					sum := md5.Sum(data)
					sent[key] = hex.EncodeToString(sum[:])
				} else {
					failed[key] = true
				}
				mu.Unlock()
				if err != nil {
					tally.Add(proto+" upload", FailedVisibly, err, "") // judged against S3 below
					continue
				}
				tally.Add(proto+" upload", Landed, nil, "")
				got, err := c.Download(name)
				switch {
				case err != nil:
					tally.Add(proto+" download", FailedVisibly, err, "")
				case string(got) != string(data):
					tally.Add(proto+" download", Corrupted, nil, fmt.Sprintf("%s: got %d bytes, want %d", key, len(got), len(data)))
				default:
					tally.Add(proto+" download", Landed, nil, "")
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	stats := e.Proxy.Stats()
	e.Proxy.SetRules()

	// Judge the uploads against the bucket: every key a client saw land holds exactly its bytes
	// (single-part objects: the ETag is their MD5), no key a client saw fail exists, nothing else
	// exists, and no multipart upload is pending.
	inBucket := map[string]string{}
	p := s3.NewListObjectsV2Paginator(e.S3.Client(), &s3.ListObjectsV2Input{Bucket: &e.S3.Bucket, Prefix: aws.String("home/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			inBucket[aws.ToString(o.Key)] = strings.Trim(aws.ToString(o.ETag), `"`)
		}
	}
	var corrupted, partial int
	for key, sum := range sent {
		if got, ok := inBucket[key]; !ok || got != sum {
			corrupted++
			if corrupted <= 10 {
				t.Errorf("%s: the client saw it land; S3 has ETag %q (present %v), want MD5 %s", key, got, ok, sum)
			}
		}
	}
	for key := range inBucket {
		if _, ok := sent[key]; !ok {
			partial++
			if partial <= 10 {
				t.Errorf("%s: in S3, but its client saw the upload fail (%v)", key, failed[key])
			}
		}
	}
	var pending []string
	for until := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if pending, err = e.PendingUploads(ctx); err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 || time.Now().After(until) {
			break
		}
	}

	// Every client has gone: the goroutines return to the idle count (give the S3 connections
	// kept for reuse their stall timeout to close; the failure bound is goroutineSlack above).
	var goroutines float64
	settle := time.Now()
	for until := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if goroutines, err = e.Metric(ctx, "go_goroutines", nil); err != nil {
			t.Fatal(err)
		}
		if goroutines <= idleGoroutines+4 || time.Now().After(until) {
			break
		}
	}
	settled := time.Since(settle)
	hwm, _ := e.Proc.PeakRSS()
	rssEnd, _ := e.Proc.RSS()
	retries, _ := e.Metric(ctx, "ferry_s3_retries_total", nil)
	upBytes, _ := e.Metric(ctx, "ferry_upload_bytes_total", nil)
	downBytes, _ := e.Metric(ctx, "ferry_download_bytes_total", nil)

	t.Logf("load: %d sessions (%d logged in), %s: %d transfers (%.1f/s), %.0f MiB up, %.0f MiB down\n%s",
		loadSessions, loggedIn.Load(), elapsed.Round(time.Millisecond), tally.Total(-1), float64(tally.Total(-1))/elapsed.Seconds(),
		upBytes/(1<<20), downBytes/(1<<20), tally.Report())
	t.Logf("judged against S3: %d landed byte-exact, %d failed visibly, %d corrupted, %d partial objects, %d pending multipart uploads",
		len(sent)-corrupted, len(failed), corrupted, partial, len(pending))
	t.Logf("gateway RSS: peak %d MiB sampled, %d MiB high-water mark (limit %d MiB), %d MiB at the end; goroutines %.0f idle before, %.0f %s after the clients left",
		peakRSS.Load()>>20, hwm>>20, loadRSSLimit>>20, rssEnd>>20, idleGoroutines, goroutines, settled.Round(100*time.Millisecond))
	t.Logf("faults injected: %d of %d S3 requests (%s); retries spent %d (proxy) / %.0f (ferry_s3_retries_total)",
		stats.Faults, stats.Requests, formatCounts(stats.ByRule), stats.Retries, retries)

	for _, b := range tally.Bad() {
		t.Errorf("%s", b)
	}
	if len(pending) > 0 {
		t.Errorf("multipart uploads left pending: %v", pending)
	}
	if loggedIn.Load() < loadSessions*9/10 {
		t.Errorf("only %d of %d sessions got their first upload through", loggedIn.Load(), loadSessions)
	}
	if len(sent) < 2*loadSessions {
		t.Errorf("only %d uploads landed in %s: the load did not load", len(sent), loadFor)
	}
	if hwm > loadRSSLimit {
		t.Errorf("gateway RSS reached %d MiB, above the %d MiB bound", hwm>>20, loadRSSLimit>>20)
	}
	if goroutines > idleGoroutines+goroutineSlack {
		t.Errorf("goroutines: %.0f idle before the load, %.0f %s after the clients left: a leak", idleGoroutines, goroutines, settled)
	}
	if stats.Faults == 0 {
		t.Errorf("no fault was injected")
	}
}
