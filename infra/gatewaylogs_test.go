package infra_test

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

// TestGatewayLogs checks the metric filters of gateway.yaml, which turn the gateway's JSON log
// lines into the metrics its alarms watch, against the lines the real gateway writes: each
// filter counts exactly the failures it is named after, and nothing a working session logs.
// (Metric filters rather than EMF: no code or sidecar; this test pins the lines they rely on.)
func TestGatewayLogs(t *testing.T) {
	filters := metricFilters(t)

	// A gateway with the embedded default: failed logins, a dropped upload, and a session that
	// works (logins and uploads that must not be counted).
	f := startEmbedded(t, "")
	if _, err := f.sftpClient(t, demoUser, "wrong password"); err == nil {
		t.Fatal("sftp login with a wrong password succeeded")
	}
	c, err := f.sftpClient(t, demoUser, demoPassword)
	if err != nil {
		t.Fatal(err)
	}
	f.sftpPut(t, c, "/ok.txt", "fine\n")
	ftpLogin(t, f.ftpAddr, "wrong password", false)
	fc := ftpLogin(t, f.ftpAddr, demoPassword, true)
	if err := fc.Stor("ok-ftp.txt", strings.NewReader("fine\n")); err != nil {
		t.Fatalf("ftp stor: %v", err)
	}
	fc.Quit()
	abortSFTPUpload(t, f)

	waitLogged(t, f.log, `"msg":"upload aborted"`)
	f.stop(t)
	lines := jsonLines(t, f.log.String())
	counts := countMatches(t, filters, lines)
	want(t, "LoginFailures (one SFTP password, one FTP login)", counts["LoginFailures"], 2)
	want(t, "UploadsNotStored (one SFTP upload cut off)", counts["UploadsNotStored"], 1)
	want(t, "DroppedEvents (the embedded bus took every event)", counts["DroppedEvents"], 0)
	want(t, "Errors (nothing failed on the server's side)", counts["Errors"], 0)

	// A gateway whose EventBridge does not answer, with a one-event queue: its events are
	// dropped and not delivered, which it logs (the latter as an error).
	dead := deadEndpoint(t)
	g := startEmbedded(t, dead)
	for i := 0; i < 4; i++ {
		if _, err := g.sftpClient(t, demoUser, "wrong password"); err == nil {
			t.Fatal("sftp login with a wrong password succeeded")
		}
		if i == 0 {
			time.Sleep(300 * time.Millisecond) // the first event is being retried: the queue fills
		}
	}
	waitLogged(t, g.log, `"msg":"event queue full, dropping events"`)
	waitLogged(t, g.log, `"msg":"event not delivered to eventbridge"`)
	g.stop(t)
	lines = jsonLines(t, g.log.String())
	counts = countMatches(t, filters, lines)
	want(t, "LoginFailures", counts["LoginFailures"], 4)
	dropped := map[string]bool{}
	for _, l := range lines {
		if filters["DroppedEvents"].match(l) {
			dropped[l["msg"].(string)] = true
		}
	}
	want(t, "DroppedEvents lines", sortedKeys(dropped), []string{"event not delivered to eventbridge", "event queue full, dropping events"})
	if counts["Errors"] < 1 {
		t.Errorf("Errors counted %d lines, want the undelivered events", counts["Errors"])
	}
	want(t, "UploadsNotStored", counts["UploadsNotStored"], 0)
}

// metricFilters returns gateway.yaml's filter patterns by metric name, parsed.
func metricFilters(t *testing.T) map[string]filterExpr {
	t.Helper()
	tp := loadTemplate(t, "gateway.yaml")
	c := newEvalCtx(t, tp, childParams(t, "Gateway", nil))
	out := map[string]filterExpr{}
	for _, id := range tp.ofType("AWS::Logs::MetricFilter") {
		mf := c.evalResource(t, tp, id)
		name := at(mf["MetricTransformations"].([]any)[0], "MetricName").(string)
		e, err := parseFilterPattern(mf["FilterPattern"].(string))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		out[name] = e
	}
	return out
}

func countMatches(t *testing.T, filters map[string]filterExpr, lines []map[string]any) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, l := range lines {
		for name, f := range filters {
			if f.match(l) {
				if counts[name] == 0 {
					t.Logf("%s counts lines like: %s", name, jsonString(l))
				}
				counts[name]++
			}
		}
	}
	t.Logf("%d log lines -> %v", len(lines), counts)
	return counts
}

func jsonLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(log, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("the gateway wrote a line that is not JSON (log.format: json): %q", l)
		}
		out = append(out, m)
	}
	return out
}

func waitLogged(t *testing.T, log *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not log %s within 30s:\n%s", s, tail(log.String(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ftpLogin(t *testing.T, addr, password string, ok bool) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Login(demoUser, password)
	if ok != (err == nil) {
		t.Fatalf("ftp login with password %q: %v", password, err)
	}
	if !ok {
		c.Quit()
	}
	return c
}

// abortSFTPUpload starts an upload and drops the connection before closing the file, as a
// client that dies mid-transfer does.
func abortSFTPUpload(t *testing.T, f *embeddedFerry) {
	t.Helper()
	c, err := f.sftpClient(t, demoUser, demoPassword)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Create("/cut-off.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("id,name\n1,half")); err != nil {
		t.Fatal(err)
	}
	c.Close() // closes the SSH connection under the open file
}

// deadEndpoint is a URL where nothing answers.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// filterExpr is a CloudWatch Logs JSON filter pattern: { $.a = "x" && ($.b != "y" || ...) }.
// Supported: string comparisons with = and != (a * in the value is a wildcard) on fields named
// by $.path, && and || with parentheses. Anything else is refused, never guessed.
type filterExpr struct {
	op          string // "&&", "||" or a comparison ("=", "!=")
	left, right *filterExpr
	field       []string
	value       *regexp.Regexp
}

func (e filterExpr) match(line map[string]any) bool {
	switch e.op {
	case "&&":
		return e.left.match(line) && e.right.match(line)
	case "||":
		return e.left.match(line) || e.right.match(line)
	}
	var v any = line
	for _, k := range e.field {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[k]; !ok {
			return false // a missing field matches neither = nor !=
		}
	}
	s, ok := v.(string)
	if !ok {
		return false
	}
	return e.value.MatchString(s) == (e.op == "=")
}

var filterToken = regexp.MustCompile(`\s*(\(|\)|&&|\|\||!=|=|\$\.[A-Za-z0-9_.]+|"(?:[^"\\]|\\.)*")`)

func parseFilterPattern(p string) (filterExpr, error) {
	p = strings.TrimSpace(p)
	if !strings.HasPrefix(p, "{") || !strings.HasSuffix(p, "}") {
		return filterExpr{}, fmt.Errorf("filter pattern %q is not a JSON pattern { ... }", p)
	}
	body := p[1 : len(p)-1]
	var toks []string
	for rest := body; strings.TrimSpace(rest) != ""; {
		m := filterToken.FindStringSubmatchIndex(rest)
		if m == nil || m[0] != 0 {
			return filterExpr{}, fmt.Errorf("filter pattern %q: cannot read %q", p, rest)
		}
		toks = append(toks, rest[m[2]:m[3]])
		rest = rest[m[1]:]
	}
	pp := &filterParser{toks: toks}
	e, err := pp.or()
	if err == nil && pp.i != len(toks) {
		err = fmt.Errorf("unexpected %q", toks[pp.i])
	}
	if err != nil {
		return filterExpr{}, fmt.Errorf("filter pattern %q: %w", p, err)
	}
	return e, nil
}

type filterParser struct {
	toks []string
	i    int
}

func (p *filterParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *filterParser) next() string { t := p.peek(); p.i++; return t }

func (p *filterParser) or() (filterExpr, error) {
	return p.binary("||", p.and)
}

func (p *filterParser) and() (filterExpr, error) {
	return p.binary("&&", p.term)
}

func (p *filterParser) binary(op string, sub func() (filterExpr, error)) (filterExpr, error) {
	l, err := sub()
	if err != nil {
		return l, err
	}
	for p.peek() == op {
		p.next()
		r, err := sub()
		if err != nil {
			return r, err
		}
		left, right := l, r
		l = filterExpr{op: op, left: &left, right: &right}
	}
	return l, nil
}

func (p *filterParser) term() (filterExpr, error) {
	if p.peek() == "(" {
		p.next()
		e, err := p.or()
		if err != nil {
			return e, err
		}
		if p.next() != ")" {
			return e, fmt.Errorf("missing )")
		}
		return e, nil
	}
	field := p.next()
	if !strings.HasPrefix(field, "$.") {
		return filterExpr{}, fmt.Errorf("want $.field, got %q", field)
	}
	op := p.next()
	if op != "=" && op != "!=" {
		return filterExpr{}, fmt.Errorf("want = or != after %s, got %q", field, op)
	}
	val := p.next()
	if !strings.HasPrefix(val, `"`) {
		return filterExpr{}, fmt.Errorf("want a quoted string after %s %s, got %q", field, op, val)
	}
	var s string
	if err := json.Unmarshal([]byte(val), &s); err != nil {
		return filterExpr{}, err
	}
	parts := strings.Split(s, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return filterExpr{op: op, field: strings.Split(strings.TrimPrefix(field, "$."), "."),
		value: regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")}, nil
}

// The evaluator the test above relies on, against CloudWatch's documented semantics for the
// subset it accepts.
func TestFilterPatternSubset(t *testing.T) {
	line := map[string]any{"level": "WARN", "msg": "upload aborted", "method": "password", "nested": map[string]any{"x": "y"}}
	for _, tc := range []struct {
		pattern string
		want    bool
		err     bool
	}{
		{`{ $.msg = "upload aborted" }`, true, false},
		{`{ $.msg = "upload*" }`, true, false},
		{`{ $.msg = "*aborted" }`, true, false},
		{`{ $.msg = "upload" }`, false, false},
		{`{ $.msg != "upload aborted" }`, false, false},
		{`{ $.absent != "x" }`, false, false},
		{`{ $.nested.x = "y" }`, true, false},
		{`{ $.level = "ERROR" || $.msg = "upload aborted" }`, true, false},
		{`{ ($.msg = "login refused" && $.method = "password") || $.msg = "login failed" }`, false, false},
		{`{ $.level = "WARN" && ($.method = "publickey" || $.method = "password") }`, true, false},
		{`upload aborted`, false, true},
		{`{ $.size > 5 }`, false, true},
		{`{ $.msg = "a" && }`, false, true},
		{`{ ($.msg = "a" }`, false, true},
	} {
		e, err := parseFilterPattern(tc.pattern)
		if (err != nil) != tc.err {
			t.Errorf("%s: error %v, want error %v", tc.pattern, err, tc.err)
			continue
		}
		if err == nil && e.match(line) != tc.want {
			t.Errorf("%s matched %v, want %v", tc.pattern, !tc.want, tc.want)
		}
	}
}
