package route

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// repoRoot finds the module root from this file's location.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// The shipped configs/pipeline.yaml loads and does what the README says: a CSV under
// incoming/<user>/ becomes processed/<user>/<stem>.jsonl via validate-csv and csv-to-jsonl,
// announced to demo, rejects to quarantine/<user>/.
func TestShippedPipelineConfig(t *testing.T) {
	c, err := Load(filepath.Join(repoRoot(t), "configs", "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := Object{Bucket: "b", Key: "incoming/alice/sales.csv", Size: 100}
	r, ok := c.Match(o)
	if !ok {
		t.Fatal("demo CSV not routed")
	}
	var steps []string
	for _, s := range r.Steps {
		steps = append(steps, s.Name)
	}
	if got := strings.Join(steps, ","); got != "validate-csv,csv-to-jsonl" {
		t.Errorf("steps = %s", got)
	}
	if r.Dataset != "demo" {
		t.Errorf("dataset = %q", r.Dataset)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if k, err := r.OutputKey(o, "", at); err != nil || k != "processed/alice/sales.jsonl" {
		t.Errorf("output = %q, %v", k, err)
	}
	if k, err := r.QuarantineKey(o, at); err != nil || k != "quarantine/alice/sales.csv" {
		t.Errorf("quarantine = %q, %v", k, err)
	}
	for _, key := range []string{"processed/alice/sales.csv", "quarantine/alice/sales.csv", "incoming/alice/sales.csv.filepart", "incoming/alice/", "incoming/alice/notes.txt", "incoming/sales.csv"} {
		if r, ok := c.Match(Object{Key: key, Size: 10}); ok {
			t.Errorf("%s routed to %s", key, r.Name)
		}
	}
	// The gateway's metadata names the user even for a key outside a user folder.
	if r, ok := c.Match(Object{Key: "incoming/sales.csv", User: "bob"}); !ok {
		t.Error("metadata user not used")
	} else if k, _ := r.OutputKey(Object{Key: "incoming/sales.csv", User: "bob"}, "", at); k != "processed/bob/sales.jsonl" {
		t.Errorf("output = %q", k)
	}
}

// Every example under configs/ that is a routes file loads.
func TestConfigsDirRoutesFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "configs", "pipeline*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs/pipeline*.yaml: %v", err)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}
