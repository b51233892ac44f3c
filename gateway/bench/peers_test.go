package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

// BenchmarkPeers (`make bench-peers`) runs Ferry and rclone serve sftp|ftp (rclone's defaults;
// the LIST row on a serve ftp with its directory cache off) over the same versitygw on
// loopback, drives both with the same clients (OpenSSH sftp with each cipher, lftp), three
// runs of every workload, interleaved (Ferry, rclone, Ferry, rclone…), and prints one table: the median rate, the server's CPU time per GiB (or per 1000 files), its peak RSS,
// and Ferry ÷ rclone. FERRY_BENCH_SIZE (e.g. 64MiB) shrinks the large transfers;
// FERRY_BENCH_SMOKE=1 runs the smoke sizes of TestPeersSmoke; FERRY_BENCH_WORKLOADS (a regexp
// on the rows' names) runs some rows only. A download needs its upload row in the same run.
func BenchmarkPeers(b *testing.B) {
	cfg := fullPeers(b)
	if os.Getenv("FERRY_BENCH_SMOKE") != "" {
		cfg = smokePeers
	}
	t := runPeers(b, cfg)
	fmt.Fprint(os.Stdout, t.String())
	for _, r := range t.rows {
		if ratio, ok := r.ratio(); ok {
			b.ReportMetric(ratio, metricName(r.name)+"-ratio")
		}
	}
}

// TestPeersSmoke runs the peer comparison at toy sizes, so the harness itself is exercised by
// `make test`: every workload against both servers, with the integrity checks, and a table
// with every row filled in (a run the peer fails is reported, not measured). The numbers mean
// nothing at this size.
func TestPeersSmoke(t *testing.T) {
	tab := runPeers(t, smokePeers)
	t.Log("\n" + tab.String())
	want := len(peerWorkloads(smokePeers))
	if len(tab.rows) != want {
		t.Fatalf("%d rows, want %d", len(tab.rows), want)
	}
	for _, r := range tab.rows {
		if f := r.cells[0]; f.rate <= 0 || f.cpu < 0 || f.peak <= 0 || f.failed > 0 {
			t.Errorf("%s, Ferry: rate %v, cpu %v, peak RSS %d, %d failed: want all measured", r.name, f.rate, f.cpu, f.peak, f.failed)
		}
		if rc := r.cells[1]; rc.failed < rc.runs && (rc.rate <= 0 || rc.cpu < 0 || rc.peak <= 0) {
			t.Errorf("%s, rclone: rate %v, cpu %v, peak RSS %d: want measured", r.name, rc.rate, rc.cpu, rc.peak)
		}
		if _, ok := r.ratio(); !ok && r.cells[1].failed < r.cells[1].runs {
			t.Errorf("%s: no ratio", r.name)
		}
	}
	if !strings.Contains(tab.String(), "Ferry ÷ rclone") {
		t.Errorf("table without its ratio column:\n%s", tab)
	}
}

// TestPeersTable: medians over the successful runs, the highest peak, and a peer's failed runs
// shown as such with their reason, never as a rate.
func TestPeersTable(t *testing.T) {
	boom := errors.New("write remote \"/conc-50-10.bin\": Failure")
	ok := func(secs, cpu float64, peakMiB int64) sample {
		return sample{measured: measured{d: time.Duration(secs * float64(time.Second)), usage: usage{cpu: time.Duration(cpu * float64(time.Second)), peak: peakMiB << 20}}, amount: 1 << 30}
	}
	tab := &peersTable{cfg: peersConfig{runs: 3}, peers: []string{"Ferry", "rclone"}, rows: []peersRow{
		{name: "upload", unit: "MB/s", bytes: true, cells: []cell{
			summarize([]sample{ok(4, 4, 50), ok(2, 5, 60), ok(8, 6, 55)}, true),
			summarize([]sample{ok(8, 8, 150), {err: boom}, ok(4, 6, 140)}, true),
		}},
		{name: "concurrent", unit: "MB/s", bytes: true, cells: []cell{
			summarize([]sample{ok(10, 5, 100), ok(10, 5, 100), ok(10, 5, 100)}, true),
			summarize([]sample{{err: boom}, {err: boom}, {err: boom}}, true),
		}},
	}}
	out := tab.String()
	t.Log("\n" + out)
	up := tab.rows[0].cells
	if want := float64(1<<30) / 4 / 1e6; up[0].rate != want || up[0].cpu != 5 || up[0].peak != 60<<20 {
		t.Errorf("Ferry upload %+v: want the median rate %.1f, median CPU 5, peak 60 MiB", up[0], want)
	}
	if want := (float64(1<<30)/8/1e6 + float64(1<<30)/4/1e6) / 2; up[1].rate != want || up[1].failed != 1 {
		t.Errorf("rclone upload %+v: want the median of its 2 good runs (%.1f) and 1 failure", up[1], want)
	}
	for _, want := range []string{"failed [2]", "[1] rclone, upload: 1 of 3 runs failed; the first: " + boom.Error(),
		"[2] rclone, concurrent: 3 of 3 runs failed", "—"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if _, ok := tab.rows[1].ratio(); ok {
		t.Error("a ratio against a failed cell")
	}
}

// peersConfig sizes one comparison.
type peersConfig struct {
	big   int64 // each large transfer (1 GiB)
	conc  int64 // each of the concurrent uploads (100 MiB)
	small int   // files of smallSize in one session, and the entries of the listed folder (1000)
	n     []int // the concurrent uploads' counts (1, 10, 50)
	runs  int   // of every workload on every server (3)
}

const smallSize = 4 << 10

func fullPeers(tb testing.TB) peersConfig {
	big := benchSize(tb)
	return peersConfig{big: big, conc: min(100<<20, max(1<<20, big/10)), small: 1000, n: []int{1, 10, 50}, runs: 3}
}

var smokePeers = peersConfig{big: 3 << 20, conc: 1 << 20, small: 12, n: []int{1, 3}, runs: 3}

// peer is one server under comparison.
type peer struct {
	name    string
	sftp    string // host:port
	ftp     string
	sftpPID int // the process serving each protocol (the same for Ferry)
	ftpPID  int
	// listFTP serves the LIST row, with no directory cache (the same as ftp for Ferry).
	listFTP    string
	listFTPPID int
	prefix     string // its root in the bucket
	strict     bool   // a failure fails the benchmark (Ferry); else it is reported (the peer)
}

// peerEnv is what the workloads share: the servers, the backend, the client key, the files.
type peerEnv struct {
	cfg     peersConfig
	srv     *s3test.Server
	client  *s3.Client
	keyFile string
	dir     string
	big     string // local file of cfg.big random bytes
	bigSHA  string
	conc    string // local file of cfg.conc random bytes
	small   string // folder of cfg.small files
	current string // the workload, server and run being measured, for failure messages
}

// workload is one row of the table: run runs it once against p and returns its time and the
// server's CPU time and peak RSS meanwhile, and the bytes or items it moved; check, called after
// the measurement, verifies what the server did. An error is the server's failure (a client
// that failed, wrong bytes): Ferry's fails the benchmark, the peer's is reported in the table.
type workload struct {
	name  string
	unit  string // of the rate: MB/s, files/s, entries/s
	bytes bool   // amount is bytes (CPU per GiB), else items (CPU per 1000)
	// heavy rows (many transfers at once) run after every run of the others: the memory they
	// leave with the Go runtime until its next GC and scavenge would otherwise be the peak RSS
	// of the single transfer that follows them in the next run (184 MiB for a 64 MiB upload).
	heavy bool
	run   func(e *peerEnv, p *peer) (m measured, amount float64, check func() error, err error)
}

func runPeers(tb testing.TB, cfg peersConfig) *peersTable {
	for _, prog := range []string{"sftp", "ssh-keygen", "lftp", "date", "sed"} { // date and sed: the marks
		testtool.Path(tb, prog)
	}
	rclone := rcloneBinary(tb)
	srv := s3test.Start(tb)
	dir := tb.TempDir()
	e := &peerEnv{cfg: cfg, srv: srv, client: directClient(srv), dir: dir,
		big: filepath.Join(dir, "big.bin"), conc: filepath.Join(dir, "conc.bin")}
	e.bigSHA = writeRandomFile(tb, e.big, cfg.big)
	writeRandomFile(tb, e.conc, cfg.conc)
	e.small = writeSmallFiles(tb, dir, cfg.small, smallSize)

	g := startGateway(tb, srv, gatewayOptions{ftp: true})
	e.keyFile = g.keyFile
	pid := g.cmd.Process.Pid
	ferry := &peer{name: "Ferry", sftp: g.sftp, ftp: g.ftp, sftpPID: pid, ftpPID: pid, listFTP: g.ftp, listFTPPID: pid,
		prefix: "bench/", strict: true}
	rc := &peer{name: "rclone", prefix: "rclone/"}
	rc.sftp, rc.sftpPID = startRclone(tb, rclone, srv, "sftp", g.keyFile+".pub", false)
	rc.ftp, rc.ftpPID = startRclone(tb, rclone, srv, "ftp", "", false)
	rc.listFTP, rc.listFTPPID = startRclone(tb, rclone, srv, "ftp", "", true)
	peers := []*peer{ferry, rc}
	// The peak RSS of each workload relies on the kernel resetting VmHWM: check it does, once.
	for _, pid := range []int{pid, rc.sftpPID, rc.ftpPID, rc.listFTPPID} {
		resetPeakRSS(tb, pid)
	}

	tab := &peersTable{cfg: cfg, peers: []string{ferry.name, rc.name}, loadBefore: loadAverage()}
	ws := peerWorkloads(cfg)
	if only := os.Getenv("FERRY_BENCH_WORKLOADS"); only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			tb.Fatalf("FERRY_BENCH_WORKLOADS=%q: %v", only, err)
		}
		ws = slices.DeleteFunc(ws, func(w workload) bool { return !re.MatchString(w.name) })
	}
	samples := make([][][]sample, len(ws)) // [workload][peer][run]
	for i := range samples {
		samples[i] = make([][]sample, len(peers))
	}
	start := time.Now()
	for _, heavy := range []bool{false, true} { // the single transfers, then the heavy rows
		var pass []int // indexes into ws
		for wi, w := range ws {
			if w.heavy == heavy {
				pass = append(pass, wi)
			}
		}
		if len(pass) > 0 {
			runPass(tb, e, cfg, ws, pass, peers, samples, start)
		}
	}
	for wi, w := range ws {
		r := peersRow{name: w.name, unit: w.unit, bytes: w.bytes}
		for pi := range peers {
			r.cells = append(r.cells, summarize(samples[wi][pi], w.bytes))
		}
		tab.rows = append(tab.rows, r)
	}
	tab.loadAfter = loadAverage()
	tab.elapsed = time.Since(start)
	return tab
}

const (
	chacha = "chacha20-poly1305@openssh.com"
)

func peerWorkloads(cfg peersConfig) []workload {
	big := sizeLabel(cfg.big)
	var ws []workload
	for _, c := range []string{chacha, aesGCM} {
		ws = append(ws, workload{name: fmt.Sprintf("SFTP upload %s, %s", big, cipherLabel(c)), unit: "MB/s", bytes: true,
			run: func(e *peerEnv, p *peer) (measured, float64, func() error, error) {
				s := sftpSession{addr: p.sftp, keyFile: e.keyFile, extra: []string{"-o", "Ciphers=" + c}}
				m, err := s.timed(p.sftpPID, "", fmt.Sprintf("put %s /big.bin\n", e.big))
				return m, float64(e.cfg.big), func() error { return e.checkObject(p.prefix + "big.bin") }, err
			}})
	}
	for _, c := range []string{chacha, aesGCM} {
		ws = append(ws, workload{name: fmt.Sprintf("SFTP download %s, %s", big, cipherLabel(c)), unit: "MB/s", bytes: true,
			run: func(e *peerEnv, p *peer) (measured, float64, func() error, error) {
				s := sftpSession{addr: p.sftp, keyFile: e.keyFile, extra: []string{"-o", "Ciphers=" + c}}
				dst := filepath.Join(e.dir, "down.bin")
				m, err := s.timed(p.sftpPID, "", fmt.Sprintf("get /big.bin %s\n", dst))
				return m, float64(e.cfg.big), func() error { return e.checkLocal(dst) }, err
			}})
	}
	ws = append(ws,
		workload{name: fmt.Sprintf("SFTP %d × 4 KiB, one session", cfg.small), unit: "files/s",
			run: func(e *peerEnv, p *peer) (measured, float64, func() error, error) {
				var batch strings.Builder
				for i := range e.cfg.small {
					fmt.Fprintf(&batch, "put %s /sftp-small/f%04d\n", filepath.Join(e.small, fmt.Sprintf("f%04d", i)), i)
				}
				s := sftpSession{addr: p.sftp, keyFile: e.keyFile}
				m, err := s.timed(p.sftpPID, "-mkdir /sftp-small\n", batch.String())
				return m, float64(e.cfg.small), func() error { return e.checkCount(p.prefix+"sftp-small/", e.cfg.small) }, err
			}},
		workload{name: fmt.Sprintf("FTP upload %s", big), unit: "MB/s", bytes: true,
			run: func(e *peerEnv, p *peer) (measured, float64, func() error, error) {
				s := lftpSession{addr: p.ftp, password: benchPassword, dir: e.dir}
				m, err := s.timed(p.ftpPID, "", fmt.Sprintf("put %s -o /big.bin\n", e.big))
				return m, float64(e.cfg.big), func() error { return e.checkObject(p.prefix + "big.bin") }, err
			}},
		workload{name: fmt.Sprintf("FTP download %s", big), unit: "MB/s", bytes: true,
			run: func(e *peerEnv, p *peer) (measured, float64, func() error, error) {
				s := lftpSession{addr: p.ftp, password: benchPassword, dir: e.dir}
				dst := filepath.Join(e.dir, "down.bin")
				m, err := s.timed(p.ftpPID, "", fmt.Sprintf("get /big.bin -o %s\n", dst))
				return m, float64(e.cfg.big), func() error { return e.checkLocal(dst) }, err
			}},
		ftpSmallFiles(cfg, "", "ftp-small", ""),
		// rclone serve ftp offers no MFMT or SITE UTIME, so lftp keeps no times there and each
		// file is PASV + STOR; Ferry keeps them (one marker per file, see s3store's attrmarks).
		// This row asks lftp not to set times, so both servers do the same work.
		ftpSmallFiles(cfg, ", times not kept", "ftp-small-nt",
			"set ftp:use-feat no\nset ftp:use-site-utime no\nset ftp:use-site-utime2 no\n"),
		workload{name: fmt.Sprintf("FTP LIST of %d entries", cfg.small), unit: "entries/s",
			run: func(e *peerEnv, p *peer) (measured, float64, func() error, error) {
				s := lftpSession{addr: p.listFTP, password: benchPassword, dir: e.dir}
				listing := filepath.Join(e.dir, "listing.txt")
				m, err := s.timed(p.listFTPPID, "", fmt.Sprintf("ls /ftp-small > %s\n", listing))
				return m, float64(e.cfg.small), func() error { return e.checkListing(listing, e.cfg.small) }, err
			}},
	)
	for _, n := range cfg.n {
		ws = append(ws, workload{name: fmt.Sprintf("SFTP %d × %s concurrent uploads", n, sizeLabel(cfg.conc)), unit: "MB/s", bytes: true, heavy: true,
			run: func(e *peerEnv, p *peer) (measured, float64, func() error, error) {
				return e.concurrentUploads(p, n)
			}})
	}
	return ws
}

// runPass runs the workloads ws[pass] cfg.runs times, interleaving the peers within each
// workload, and empties each peer's folder after every run (a download needs its upload row in
// the same run).
func runPass(tb testing.TB, e *peerEnv, cfg peersConfig, ws []workload, pass []int, peers []*peer, samples [][][]sample, start time.Time) {
	for run := range cfg.runs {
		for _, wi := range pass {
			w := ws[wi]
			for pi, p := range peers {
				e.current = fmt.Sprintf("%s on %s, run %d", w.name, p.name, run+1)
				m, amount, check, err := w.run(e, p)
				if err == nil {
					err = check()
				}
				if err != nil {
					if p.strict {
						tb.Fatalf("%s: %v", e.current, err)
					}
					tb.Logf("%s failed: %v", e.current, err)
				}
				samples[wi][pi] = append(samples[wi][pi], sample{measured: m, amount: amount, err: err})
			}
		}
		for _, p := range peers {
			if err := e.clear(p.prefix); err != nil {
				tb.Fatal(err)
			}
		}
		tb.Logf("%s: run %d of %d done after %v (load %s)", ws[pass[0]].name, run+1, cfg.runs, time.Since(start).Round(time.Second), loadAverage())
	}
}

// ftpSmallFiles is the row that uploads the small files with one lftp mput into folder, lftp
// set up by settings before it connects.
func ftpSmallFiles(cfg peersConfig, suffix, folder, settings string) workload {
	return workload{name: fmt.Sprintf("FTP %d × 4 KiB, lftp mput%s", cfg.small, suffix), unit: "files/s",
		run: func(e *peerEnv, p *peer) (measured, float64, func() error, error) {
			s := lftpSession{addr: p.ftp, password: benchPassword, dir: e.dir, settings: settings}
			m, err := s.timed(p.ftpPID, "mkdir -f -p /"+folder+"\n", fmt.Sprintf("mput -O /%s %s/*\n", folder, e.small))
			return m, float64(e.cfg.small), func() error { return e.checkCount(p.prefix+folder+"/", e.cfg.small) }, err
		}}
}

// concurrentUploads runs n sftp sessions at once, each uploading the conc file (default cipher,
// default config), and returns the time from the first start to the last finish, with the
// server's CPU time and peak RSS over that span (its n logins included: a key check each).
func (e *peerEnv) concurrentUploads(p *peer, n int) (measured, float64, func() error, error) {
	s := sftpSession{addr: p.sftp, keyFile: e.keyFile}
	var m measured
	errs := make([]error, n)
	u, err := measureProcess(p.sftpPID, func() {
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			wg.Go(func() { errs[i] = s.run(fmt.Sprintf("put %s /conc-%d-%02d.bin\n", e.conc, n, i)) })
		}
		wg.Wait()
		m.d = time.Since(start)
	})
	if err != nil {
		return m, 0, nil, err
	}
	m.usage = u
	failed := slices.DeleteFunc(errs, func(err error) bool { return err == nil })
	if len(failed) > 0 {
		return m, 0, nil, fmt.Errorf("%d of %d uploads failed, the first: %w", len(failed), n, failed[0])
	}
	return m, float64(n) * float64(e.cfg.conc), func() error {
		for i := range n {
			key := fmt.Sprintf("%sconc-%d-%02d.bin", p.prefix, n, i)
			head, err := e.client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(e.srv.Bucket), Key: aws.String(key)})
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			if got := aws.ToInt64(head.ContentLength); got != e.cfg.conc {
				return fmt.Errorf("%s is %d bytes, want %d", key, got, e.cfg.conc)
			}
		}
		return e.clear(p.prefix + "conc-")
	}, nil
}

// checkObject fails unless the object key holds the big file's bytes.
func (e *peerEnv) checkObject(key string) error {
	out, err := e.client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.srv.Bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer out.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, out.Body)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.bigSHA {
		return fmt.Errorf("%s holds %d bytes, sha256 %s; want %d bytes, sha256 %s", key, n, got, e.cfg.big, e.bigSHA)
	}
	return nil
}

// checkLocal fails unless the downloaded file holds the big file's bytes; it removes it.
func (e *peerEnv) checkLocal(path string) error {
	defer os.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.bigSHA {
		return fmt.Errorf("downloaded %d bytes, sha256 %s; want %d bytes, sha256 %s", n, got, e.cfg.big, e.bigSHA)
	}
	return nil
}

// checkCount fails unless exactly n objects (not folder markers) are under prefix.
func (e *peerEnv) checkCount(prefix string, n int) error {
	keys, err := e.list(prefix)
	if err != nil {
		return err
	}
	got := 0
	for _, k := range keys {
		if !strings.HasSuffix(k, "/") { // a folder marker (Ferry's mkdir)
			got++
		}
	}
	if got != n {
		return fmt.Errorf("%d objects under %s, want %d", got, prefix, n)
	}
	return nil
}

var listedName = regexp.MustCompile(`(?m)\bf\d{4}$`)

// checkListing fails unless the LIST output at path names n files.
func (e *peerEnv) checkListing(path string, n int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if got := len(listedName.FindAll(data, -1)); got != n {
		return fmt.Errorf("LIST named %d files, want %d: %s", got, n, lastLines(string(data), 3))
	}
	return nil
}

func (e *peerEnv) list(prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(e.client, &s3.ListObjectsV2Input{Bucket: aws.String(e.srv.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// clear deletes every object under prefix, so the next run starts from the same state and the
// backend's disk (RAM, under /dev/shm) does not fill up.
func (e *peerEnv) clear(prefix string) error {
	keys, err := e.list(prefix)
	if err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		var ids []s3types.ObjectIdentifier
		for _, k := range keys[:n] {
			ids = append(ids, s3types.ObjectIdentifier{Key: aws.String(k)})
		}
		if _, err := e.client.DeleteObjects(context.Background(), &s3.DeleteObjectsInput{
			Bucket: aws.String(e.srv.Bucket), Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		}); err != nil {
			return fmt.Errorf("clear %s: %w", prefix, err)
		}
		keys = keys[n:]
	}
	return nil
}

func cipherLabel(c string) string {
	switch c {
	case chacha:
		return "chacha20"
	case aesGCM:
		return "aes128-gcm"
	}
	return c
}

func sizeLabel(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

var metricChars = regexp.MustCompile(`[^A-Za-z0-9]+`)

// metricName turns a row label into a benchmark metric unit (no spaces).
func metricName(s string) string {
	return strings.Trim(metricChars.ReplaceAllString(s, "-"), "-")
}

func machine() string {
	return fmt.Sprintf("%d CPUs, %s", runtime.NumCPU(), runtime.Version())
}
