package handler

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/ferrygw/ferry/pipeline/event"
)

func sha256Hex(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
func md5Hex(s string) string    { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }

// TestTransformSidecar: a route with verify-checksum reads "<input>.sha256". The input waits
// for its sidecar whichever arrives first, is processed once, and a wrong digest is rejected.
func TestTransformSidecar(t *testing.T) {
	cases := []struct {
		name, key, sidecar string
		sidecarFirst       bool
		wantType           string
		wantReason         string
	}{
		{"data then sidecar", "verified/dave/a.csv", sha256Hex(goodCSV) + "  a.csv\n", false, event.DetailTypeFileProcessed, ""},
		{"sidecar then data", "verified/dave/b.csv", strings.ToUpper(sha256Hex(goodCSV)) + "\n", true, event.DetailTypeFileProcessed, ""},
		{"wrong digest", "verified/dave/c.csv", sha256Hex("other") + "  c.csv\n", false, event.DetailTypeFileRejected, "checksum: sha256 is " + sha256Hex(goodCSV)},
		{"malformed sidecar", "verified/dave/d.csv", "not-a-digest\n", true, event.DetailTypeFileRejected, "is not a sha256 digest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			var data, side []byte
			if c.sidecarFirst {
				side = e.upload(c.key+".sha256", c.sidecar, nil)
				e.handle(side)
				data = e.upload(c.key, goodCSV, map[string]string{MetaUser: "dave", MetaTransferID: "t-9"})
			} else {
				data = e.upload(c.key, goodCSV, map[string]string{MetaUser: "dave", MetaTransferID: "t-9"})
				e.handle(data)
				if n := len(e.fileEvents()); n != 0 {
					t.Fatalf("%d events before the sidecar arrived", n)
				}
				if ks := e.keys("verified-"); len(ks) != 0 {
					t.Fatalf("outputs before the sidecar arrived: %q", ks)
				}
				side = e.upload(c.key+".sha256", c.sidecar, nil)
			}
			for _, ev := range [][]byte{data, side, data, side} { // redeliveries change nothing
				e.handle(ev)
			}
			evs := e.fileEvents()
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1: %+v", len(evs), evs)
			}
			d := evs[0].Detail
			if evs[0].DetailType != c.wantType || len(d.Files) != 1 || d.Files[0].Key != c.key || d.TransferID != "t-9" || d.User != "dave" {
				t.Fatalf("event %s %+v", evs[0].DetailType, d)
			}
			if ks := e.keys("verified-any/"); len(ks) != 0 {
				t.Errorf("the later catch-all route took the sidecar as an input: %q", ks)
			}
			stem := strings.TrimSuffix(c.key[strings.LastIndex(c.key, "/")+1:], ".csv")
			_, _, processed := e.get("verified-out/dave/" + stem + ".jsonl")
			_, _, quarantined := e.get("verified-quarantine/dave/" + stem + ".csv")
			if c.wantReason == "" {
				if !processed || quarantined {
					t.Errorf("processed %v quarantined %v; keys %q", processed, quarantined, e.keys(""))
				}
				return
			}
			if processed || !quarantined || !strings.Contains(d.Files[0].Reason, c.wantReason) {
				t.Errorf("processed %v quarantined %v reason %q (want %q)", processed, quarantined, d.Files[0].Reason, c.wantReason)
			}
		})
	}
}

// TestTransformSidecarCatchAll: the catch-all route after the sidecar route still takes every
// other file under the prefix, digest files that are no input's sidecar included.
func TestTransformSidecarCatchAll(t *testing.T) {
	e := newEnv(t)
	e.handle(e.upload("verified/dave/readme.txt", "hello\n", nil))
	e.handle(e.upload("verified/dave/SHA256SUMS.sha256", sha256Hex(goodCSV)+"  a.csv\n", nil))
	e.handle(e.upload("verified/dave/a.csv.sha256", sha256Hex(goodCSV)+"  a.csv\n", nil))
	got := e.keys("verified-any/")
	if len(got) != 2 || got[0] != "verified-any/dave/SHA256SUMS.sha256" || got[1] != "verified-any/dave/readme.txt" {
		t.Errorf("catch-all outputs %q", got)
	}
}

// TestTransformSidecarInBatch: in a batch route, each file's sidecar is read when the marker
// arrives; a file without one is rejected, the others go through, one notification lists all.
func TestTransformSidecarInBatch(t *testing.T) {
	e := newEnv(t)
	e.handle(e.upload("signed-batches/fay/1.csv", goodCSV, nil))
	e.handle(e.upload("signed-batches/fay/1.csv.md5", md5Hex(goodCSV)+"  1.csv\n", nil))
	e.handle(e.upload("signed-batches/fay/2.csv", "id\n7\n", nil)) // no sidecar
	e.handle(e.upload("signed-batches/fay/go.done", "", nil))
	evs := e.fileEvents()
	if len(evs) != 1 || len(evs[0].Detail.Files) != 2 {
		t.Fatalf("events %+v", evs)
	}
	f1, f2 := evs[0].Detail.Files[0], evs[0].Detail.Files[1]
	if f1.Key != "signed-batches/fay/1.csv" || f1.Reason != "" || len(f1.Outputs) != 1 {
		t.Errorf("file 1 %+v", f1)
	}
	if f2.Key != "signed-batches/fay/2.csv" || f2.Reason != "checksum: no sidecar 2.csv.md5" || f2.Quarantine != "signed-quarantine/fay/2.csv" {
		t.Errorf("file 2 %+v", f2)
	}
	if body, _, ok := e.get("signed-out/fay/1.csv"); !ok || body != goodCSV {
		t.Errorf("output %q %v", body, ok)
	}
}
