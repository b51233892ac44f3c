package embedded

import (
	"encoding/json"
	"testing"

	"github.com/ferrygw/ferry/pipeline/bus"
	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/route"
)

// TestTransformPatternSkipsOwnRecords: as the deployed rule, the embedded transform rule takes
// new objects under the routes' prefixes only, so the ledger and the status records (.ferry/)
// and the outputs never reach the pipeline; a route without a prefix takes every key but
// those under .ferry/.
func TestTransformPatternSkipsOwnRecords(t *testing.T) {
	shipped, err := route.Load("../../../configs/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	anyKey, err := route.Parse("any.yaml", []byte("datasets: {d: {}}\nroutes:\n  - name: all\n    match: {glob: \"*.csv\"}\n    transforms: [{name: copy}]\n    output: \"out/{name}\"\n    quarantine: \"q/\"\n    dataset: d\n"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		routes *route.Config
		ok     bool
		match  map[string]bool // key -> matched
	}{
		{"shipped routes", shipped, true, map[string]bool{
			"incoming/demo/report.csv": true, ".ferry/ledger/status/2026-12-06/x/r,t=1": false,
			".ferry/ledger/object/abc": false, "processed/demo/report.jsonl": false,
		}},
		{"a route without prefix", anyKey, false, map[string]bool{
			"incoming/demo/report.csv": true, "processed/x.jsonl": true, ".ferry/ledger/object/abc": false,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pattern, ok := transformPattern(c.routes)
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v (%s)", ok, c.ok, pattern)
			}
			p, err := bus.CompilePattern(pattern)
			if err != nil {
				t.Fatal(err)
			}
			for key, want := range c.match {
				ev, err := event.NewObjectCreated(event.S3Change{Account: "000000000000", Region: "us-east-1", Bucket: "ferry", Key: key,
					Size: 1, ETag: "e", Sequencer: "0000000000000001", Requester: "ferry", Reason: event.ReasonPutObject})
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := json.Marshal(ev)
				got, err := p.Matches(raw)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("%s: matched %v, want %v (pattern %s)", key, got, want, pattern)
				}
			}
		})
	}
}
