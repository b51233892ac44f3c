package infra_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferrygw/ferry/gateway/ferryproc"
	"github.com/ferrygw/ferry/gateway/loadtest"
	"github.com/ferrygw/ferry/pipeline/testtool"
	"github.com/ferrygw/ferry/pipeline/testtool/faultproxy"
)

// observed is `ferry serve` running the embedded default (S3 endpoint, bus, pipeline, outbox)
// with SFTP, FTPS, metrics and JSON logs, after some traffic.
type observed struct {
	proc                   *ferryproc.Process
	dir, sftp, ftp, metric string
}

// startObserved runs the embedded default and sends it traffic that makes every kind of series
// appear: logins that fail, a plaintext FTP login refused, a good and a bad CSV over SFTP (one
// processed, one rejected and notified), an FTPS upload, a download, a stat of a missing file.
func startObserved(t *testing.T) *observed {
	t.Helper()
	bin := ferryproc.Build(t)
	o := &observed{dir: t.TempDir(), sftp: testtool.FreeAddr(t), ftp: testtool.FreeAddr(t), metric: testtool.FreeAddr(t)}
	h, _ := bcrypt.GenerateFromPassword([]byte(demoPassword), bcrypt.MinCost)
	users := fmt.Sprintf("users:\n  - name: demo\n    password_hash: %q\n    home: incoming/demo/\n    permissions: [\"*\"]\n", h)
	if err := os.WriteFile(filepath.Join(o.dir, "users.yaml"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	s3Addr := testtool.FreeAddr(t)
	cfg := filepath.Join(o.dir, "ferry.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`listen:
  sftp: %q
  ftp: %q
  metrics: %q
storage:
  s3:
    bucket: ferry
host_keys:
  paths: [keys/ssh_host_ed25519_key]
users_file: users.yaml
ftp:
  passive_ports: ""
  tls: {mode: required, dev_self_signed: true}
embedded:
  s3: {listen: %q, data_dir: data/s3, access_key: ferry, secret: ferrysecret}
  events: {dir: data/events}
  notifications: {outbox: data/outbox.jsonl}
  pipeline: {routes: %q}
log: {level: info, format: json}
`, o.sftp, o.ftp, o.metric, s3Addr, filepath.Join(repoRoot(t), "configs", "pipeline.yaml"))), 0o600); err != nil {
		t.Fatal(err)
	}
	o.proc = ferryproc.Start(t, bin, cfg)
	o.proc.WaitListening(t, o.sftp, o.ftp, o.metric)

	bad := &loadtest.SFTPClient{Addr: o.sftp, User: "nobody"}
	if err := bad.Upload("x", nil); err == nil {
		t.Error("a login with no such user succeeded")
	}
	if c, err := ftp.Dial(o.ftp, ftp.DialWithTimeout(5*time.Second)); err == nil {
		if err := c.Login(demoUser, demoPassword); err == nil {
			t.Error("a plaintext FTP login succeeded where TLS is required")
		}
		c.Quit()
	}
	c := &loadtest.SFTPClient{Addr: o.sftp, User: demoUser}
	defer c.Close()
	// loadtest's clients log in with "pw-<user>": go through pkg/sftp directly here.
	sc, err := (&embeddedFerry{sftpAddr: o.sftp}).sftpClient(t, demoUser, demoPassword)
	if err != nil {
		t.Fatal(err)
	}
	(&embeddedFerry{}).sftpPut(t, sc, "good.csv", "id,name\n1,ann\n2,bob\n")
	(&embeddedFerry{}).sftpPut(t, sc, "bad.csv", "a,b\n1\n")
	if f, err := sc.Open("good.csv"); err == nil {
		io.Copy(io.Discard, f)
		f.Close()
	}
	if _, err := sc.Stat("missing.csv"); err == nil {
		t.Error("stat of a missing file succeeded")
	}
	fc, err := ftp.Dial(o.ftp, ftp.DialWithTimeout(5*time.Second), ftp.DialWithExplicitTLS(&tls.Config{InsecureSkipVerify: true}))
	if err != nil {
		t.Fatal(err)
	}
	if err := fc.Login(demoUser, demoPassword); err != nil {
		t.Fatal(err)
	}
	if err := fc.Stor("over-ftps.txt", strings.NewReader("hello\n")); err != nil {
		t.Fatal(err)
	}
	fc.Quit()
	outbox := filepath.Join(o.dir, "data", "outbox.jsonl")
	// The handler logs "notify: sent" after the outbox line, once the ledger marked it sent.
	done := func() bool {
		return countLines(outbox) >= 2 && strings.Count(o.proc.Log.String(), `"msg":"notify: sent"`) >= 2
	}
	for deadline := time.Now().Add(30 * time.Second); !done(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the two notifications never reached the outbox and the log:\n%s", ferryproc.Tail(o.proc.Log.String(), 6000))
		}
	}
	return o
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// scrapeNames returns the names a scrape of addr exports, histogram and summary series included
// (x_bucket, x_sum, x_count).
func scrapeNames(t *testing.T, addr string, into map[string]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fams, err := ferryproc.Scrape(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range fams {
		into[name] = true
		switch f.GetType().String() {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			into[name+"_bucket"], into[name+"_sum"], into[name+"_count"] = true, true, true
		case "SUMMARY":
			into[name+"_sum"], into[name+"_count"] = true, true
		}
	}
}

// promRules is the shape of a Prometheus rules file.
type promRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// dashboardExprs returns every PromQL expression of a Grafana dashboard: panel targets (rows'
// nested panels too) and query variables, each with where it was found.
func dashboardExprs(t *testing.T, path string) (map[string]string, []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	exprs := map[string]string{}
	var rows []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				rows = append(rows, p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("%s: panel %q target %s has no expression", path, p.Title, tg.RefID)
				}
				exprs[tg.Expr] = fmt.Sprintf("panel %q", p.Title)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		exprs[q.Query] = fmt.Sprintf("variable %q", v.Name)
	}
	return exprs, rows
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// TestAlertsAndDashboardUseExportedMetrics scrapes two running gateways after traffic — the
// embedded default with its pipeline, and one storing into versitygw through a fault proxy that
// sends its events to EventBridge — and checks that every metric the Prometheus alerting rules
// and the Grafana dashboard use is one they export. A rule or panel naming a metric that does not
// exist never fires or shows nothing, silently; this is where that is caught.
func TestAlertsAndDashboardUseExportedMetrics(t *testing.T) {
	exported := map[string]bool{}
	o := startObserved(t)
	scrapeNames(t, o.metric, exported)

	// A gateway on AWS-like storage: events to an EventBridge endpoint, S3 failing once.
	eb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Entries []json.RawMessage }
		_ = json.NewDecoder(r.Body).Decode(&in)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		fmt.Fprintf(w, `{"FailedEntryCount":0,"Entries":[%s]}`, strings.TrimSuffix(strings.Repeat(`{"EventId":"x"},`, len(in.Entries)), ","))
	}))
	t.Cleanup(eb.Close)
	e := loadtest.Start(t, loadtest.Options{Proxy: true, Seed: 1,
		Extra: fmt.Sprintf("events:\n  eventbridge: {bus: default, region: us-east-1, endpoint: %q}", eb.URL)})
	e.Proxy.SetRules(faultproxy.Rule{Op: "PutObject", Kind: faultproxy.SlowDown, Times: 4})
	c := &loadtest.SFTPClient{Addr: e.SFTP, User: e.Users[0]}
	defer c.Close()
	if err := c.Upload("refused.bin", []byte("x")); err == nil { // three SlowDowns: fails
		t.Error("an upload through three SlowDowns succeeded")
	}
	if err := c.Upload("retried.bin", []byte("y")); err != nil { // one more, then it lands
		t.Errorf("an upload after one SlowDown: %v", err)
	}
	scrapeNames(t, e.Metrics, exported)

	check := func(where, expr string) {
		names, err := metricNames(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s uses %s, which no running gateway exports", where, n)
			}
		}
	}

	rulesFile := filepath.Join(repoRoot(t), "infra", "prometheus", "alerts.yaml")
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules promRules
	if err := yaml.UnmarshalWithOptions(data, &rules, yaml.Strict()); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts++
			where := fmt.Sprintf("alerts.yaml group %s alert %s", g.Name, r.Alert)
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs alert, expr and a summary and description", where)
			}
			if s := r.Labels["severity"]; s != "page" && s != "ticket" {
				t.Errorf("%s: severity %q, want page or ticket", where, s)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", where, r.For, err)
				}
			}
			check(where, r.Expr)
		}
	}
	exprs, rows := dashboardExprs(t, filepath.Join(repoRoot(t), "infra", "grafana", "ferry.json"))
	for expr, where := range exprs {
		check("ferry.json "+where, expr)
	}
	for _, theme := range []string{"Transfers", "Failures", "Logins", "Memory", "Events"} {
		found := false
		for _, r := range rows {
			found = found || strings.Contains(r, theme)
		}
		if !found {
			t.Errorf("the dashboard has no row about %s (rows: %v)", theme, rows)
		}
	}
	var ferryNames []string
	for n := range exported {
		if strings.HasPrefix(n, "ferry_") {
			ferryNames = append(ferryNames, n)
		}
	}
	sort.Strings(ferryNames)
	t.Logf("%d alerting rules and %d dashboard queries checked against %d exported names; Ferry's own: %s",
		alerts, len(exprs), len(exported), strings.Join(ferryNames, " "))
}

// TestOneIDFromUploadToNotification follows one SFTP upload through the embedded default's JSON
// log: the gateway's upload line gives its transfer id, and the same id is on the embedded S3
// endpoint's line for the object, the gateway's Transfer Completed event, the pipeline's lines
// (EMF is CloudWatch's; here the log) and the notification in the outbox. Every log line that
// names the file names the id, except the bus's record of S3's own Object Created event: S3's
// event format has no place for it (the pipeline reads it from the object's metadata).
func TestOneIDFromUploadToNotification(t *testing.T) {
	o := startObserved(t)
	const key = "incoming/demo/good.csv"
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(o.proc.Log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	tid := ""
	for _, l := range lines {
		if l["msg"] == "upload" && l["path"] == "/good.csv" {
			tid, _ = l["transfer_id"].(string)
		}
	}
	if tid == "" {
		t.Fatalf("no SFTP upload line for /good.csv with a transfer id in:\n%s", ferryproc.Tail(o.proc.Log.String(), 6000))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		raw, _ := json.Marshal(l)
		s := string(raw)
		if !strings.Contains(s, "good.csv") && !strings.Contains(s, "good.jsonl") {
			continue
		}
		if l["source"] == "aws.s3" {
			continue // S3's own event: no transfer id in its format
		}
		if other, ok := l["transfer_id"].(string); ok && other != tid {
			continue // another transfer of the same file (its download)
		}
		if !strings.Contains(s, tid) {
			t.Errorf("a log line about the file lacks transfer %s: %s", tid, s)
			continue
		}
		seen[fmt.Sprint(l["component"], ": ", l["msg"])] = true
	}
	for _, want := range []string{"sftpd: upload", "s3server: object changed", "pipeline: transform: processed", "pipeline: notify: sent"} {
		if !seen[want] {
			t.Errorf("no %q line carries transfer %s; lines that do: %v", want, tid, keys(seen))
		}
	}
	if !seenDetail(lines, "Transfer Completed", tid) {
		t.Errorf("the bus logged no Transfer Completed event with transfer %s", tid)
	}
	outbox, err := os.ReadFile(filepath.Join(o.dir, "data", "outbox.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(outbox)), "\n") {
		if strings.Contains(line, key) {
			n++
			if !strings.Contains(line, tid) {
				t.Errorf("the notification for %s lacks transfer %s", key, tid)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d notifications for %s, want 1", n, key)
	}
	t.Logf("transfer %s found in: %v, the Transfer Completed event and the notification", tid, keys(seen))
}

func seenDetail(lines []map[string]any, detailType, tid string) bool {
	for _, l := range lines {
		if l["detail_type"] == detailType && strings.Contains(fmt.Sprint(l["detail"]), tid) {
			return true
		}
	}
	return false
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
