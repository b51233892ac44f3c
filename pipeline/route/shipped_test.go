package route

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/notify"
	"github.com/ferrygw/ferry/pipeline/transform"
)

// The shipped demo route, run through the real transforms: a good CSV becomes one JSONL output
// at processed/<user>/<stem>.jsonl; a malformed one is a Rejection (-> quarantine/<user>/).
func TestShippedDemoRouteRunsTheChain(t *testing.T) {
	c, err := Load(filepath.Join(repoRoot(t), "configs", "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := Object{Key: "incoming/alice/sales.csv", Size: 30}
	r, ok := c.Match(o)
	if !ok {
		t.Fatal("not routed")
	}
	run := func(body string) (map[string]string, error) {
		var ts []transform.Transform
		for _, s := range r.Steps {
			tr, err := transform.Default().New(s)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, tr)
		}
		out := map[string]string{}
		err := transform.Chain(context.Background(), ts, transform.File{Name: "sales.csv", Body: strings.NewReader(body)}, func(f transform.File) error {
			b, err := io.ReadAll(f.Body)
			if err != nil {
				return err
			}
			k, err := r.OutputKey(o, f.Name, testTime)
			if err != nil {
				return err
			}
			out[k] = string(b)
			return nil
		})
		return out, err
	}
	out, err := run("id,name\n1,ann\n2,bob\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("outputs = %v", out)
	}
	for k, v := range out {
		if k != "processed/alice/sales.jsonl" || strings.Count(v, "\n") != 2 || !strings.Contains(v, `"name":"ann"`) {
			t.Errorf("output %q = %q", k, v)
		}
	}
	_, err = run("id,name\n1,ann,extra\n")
	var rej *transform.Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("malformed CSV: err = %v, want a Rejection", err)
	}
	if k, err := r.QuarantineKey(o, testTime); err != nil || k != "quarantine/alice/sales.csv" {
		t.Errorf("quarantine = %q, %v", k, err)
	}
}

// The commented-out examples of the shipped file (a dataset's own templates, download links)
// load when uncommented, and do what their comments say.
func TestShippedCommentedExamplesLoad(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "configs", "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	uncomment := false
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "# templates:" || trimmed == "# download_links:" {
			uncomment = true
		} else if !strings.HasPrefix(trimmed, "#   ") && !strings.HasPrefix(trimmed, "# templates:") {
			uncomment = false
		}
		if uncomment {
			line = strings.Replace(line, "# ", "", 1)
		}
		out = append(out, line)
	}
	c, err := Parse("pipeline.yaml (examples uncommented)", []byte(strings.Join(out, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Datasets["demo"]
	if d.LinkExpiry != 24*time.Hour {
		t.Errorf("download_links not enabled: %+v", d)
	}
	n := notify.Notice{Kind: notify.KindRejected, Status: notify.KindRejected, Dataset: "demo", User: "ana",
		File: notify.File{Name: "bad.csv", Line: 3, Reason: "2 fields, the header has 3"}}
	n.Files = []notify.File{n.File}
	msg, err := d.Templates.Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "[demo] Please resend bad.csv" || msg.Message != "Hello ana,\nbad.csv could not be used (line 3): 2 fields, the header has 3.\n" ||
		msg.SMS != "bad.csv rejected at line 3: 2 fields, the header has 3" {
		t.Errorf("example templates rendered %+v", msg)
	}
}
