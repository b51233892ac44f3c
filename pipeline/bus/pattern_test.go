package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// s3Created is an Object Created event as S3 sends it (AWS's documented example, with a key
// that has a directory and a suffix).
const s3Created = `{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created",
 "source":"aws.s3","account":"111122223333","time":"2021-11-12T00:00:00Z","region":"ca-central-1",
 "resources":["arn:aws:s3:::ferry"],
 "detail":{"version":"0","bucket":{"name":"ferry"},
   "object":{"key":"incoming/demo/Sales.CSV","size":5,"etag":"b1946ac92492d2347c6235b4d2611184","sequencer":"617f08299329d189"},
   "request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","source-ip-address":"1.2.3.4","reason":"PutObject"}}`

const gatewayDone = `{"version":"0","id":"a","detail-type":"Transfer Completed","source":"ferry.gateway","account":"","time":"2021-11-12T00:00:00Z","region":"","resources":[],
 "detail":{"user":"demo","protocol":"sftp","bytes":10}}`

func TestPatternMatching(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		event   string
		want    bool
	}{
		{"source", `{"source":["aws.s3"]}`, s3Created, true},
		{"source other", `{"source":["aws.s3"]}`, gatewayDone, false},
		{"source list", `{"source":["aws.s3","ferry.gateway"]}`, gatewayDone, true},
		{"detail-type", `{"source":["aws.s3"],"detail-type":["Object Created"]}`, s3Created, true},
		{"detail-type other", `{"detail-type":["Object Deleted"]}`, s3Created, false},
		{"nested bucket", `{"detail":{"bucket":{"name":["ferry"]}}}`, s3Created, true},
		{"nested bucket other", `{"detail":{"bucket":{"name":["other"]}}}`, s3Created, false},
		{"prefix", `{"detail":{"object":{"key":[{"prefix":"incoming/demo/"}]}}}`, s3Created, true},
		{"prefix other", `{"detail":{"object":{"key":[{"prefix":"incoming/bob/"}]}}}`, s3Created, false},
		{"prefix list", `{"detail":{"object":{"key":[{"prefix":"drop/"},{"prefix":"incoming/"}]}}}`, s3Created, true},
		{"prefix list other", `{"detail":{"object":{"key":[{"prefix":"drop/"},{"prefix":".ferry/"}]}}}`, s3Created, false},
		{"suffix", `{"detail":{"object":{"key":[{"suffix":".CSV"}]}}}`, s3Created, true},
		{"suffix other", `{"detail":{"object":{"key":[{"suffix":".csv"}]}}}`, s3Created, false},
		{"shellstyle", `{"detail":{"object":{"key":[{"shellstyle":"incoming/*/Sales.*"}]}}}`, s3Created, true},
		{"shellstyle other", `{"detail":{"object":{"key":[{"shellstyle":"outgoing/*"}]}}}`, s3Created, false},
		{"wildcard", `{"detail":{"object":{"key":[{"wildcard":"incoming/*.CSV"}]}}}`, s3Created, true},
		{"exists true", `{"detail":{"source-ip-address":[{"exists":true}]}}`, s3Created, true},
		{"exists true missing", `{"detail":{"version-id":[{"exists":true}]}}`, s3Created, false},
		{"exists false", `{"detail":{"object":{"version-id":[{"exists":false}]}}}`, s3Created, true},
		{"anything-but list", `{"detail":{"reason":[{"anything-but":["DeleteObject","CopyObject"]}]}}`, s3Created, true},
		{"anything-but excluded", `{"detail":{"reason":[{"anything-but":["PutObject"]}]}}`, s3Created, false},
		{"anything-but string", `{"detail":{"reason":[{"anything-but":"PutObject"}]}}`, s3Created, false},
		{"equals-ignore-case", `{"detail":{"object":{"key":[{"equals-ignore-case":"INCOMING/DEMO/sales.csv"}]}}}`, s3Created, true},
		{"number exact", `{"detail":{"object":{"size":[5]}}}`, s3Created, true},
		{"number other", `{"detail":{"object":{"size":[6]}}}`, s3Created, false},
		{"all fields must match", `{"source":["aws.s3"],"detail":{"bucket":{"name":["other"]}}}`, s3Created, false},
		// anything-but a prefix or suffix: quamina cannot, the matcher checks it after quamina.
		{"anything-but prefix", `{"detail":{"object":{"key":[{"anything-but":{"prefix":".ferry/"}}]}}}`, s3Created, true},
		{"anything-but prefix excluded", `{"detail":{"object":{"key":[{"anything-but":{"prefix":"incoming/"}}]}}}`, s3Created, false},
		{"anything-but prefix, field missing", `{"detail":{"object":{"version-id":[{"anything-but":{"prefix":"x"}}]}}}`, s3Created, false},
		{"anything-but prefix, not a string", `{"detail":{"object":{"size":[{"anything-but":{"prefix":"x"}}]}}}`, s3Created, false},
		{"anything-but suffix", `{"detail":{"object":{"key":[{"anything-but":{"suffix":".tmp"}}]}}}`, s3Created, true},
		{"anything-but suffix excluded", `{"detail":{"object":{"key":[{"anything-but":{"suffix":".CSV"}}]}}}`, s3Created, false},
		{"anything-but prefix and the rest", `{"source":["aws.s3"],"detail-type":["Object Created"],"detail":{"bucket":{"name":["ferry"]},"object":{"key":[{"anything-but":{"prefix":".ferry/"}}]}}}`, s3Created, true},
		{"anything-but prefix, the rest fails", `{"source":["ferry.gateway"],"detail":{"object":{"key":[{"anything-but":{"prefix":".ferry/"}}]}}}`, s3Created, false},
		{"anything-but prefix, array: one element passes", `{"resources":[{"anything-but":{"prefix":"arn:aws:s3:::other"}}]}`, s3Created, true},
		{"anything-but prefix, array: none passes", `{"resources":[{"anything-but":{"prefix":"arn:aws:s3:::"}}]}`, s3Created, false},
		{"two anything-but prefixes", `{"source":[{"anything-but":{"prefix":"ferry."}}],"detail":{"object":{"key":[{"anything-but":{"prefix":".ferry/"}}]}}}`, s3Created, true},
		{"two anything-but prefixes, one excludes", `{"source":[{"anything-but":{"prefix":"aws."}}],"detail":{"object":{"key":[{"anything-but":{"prefix":".ferry/"}}]}}}`, s3Created, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := CompilePattern(tc.pattern)
			if err != nil {
				t.Fatalf("compile %s: %v", tc.pattern, err)
			}
			got, err := p.Matches([]byte(tc.event))
			if err != nil {
				t.Fatalf("match: %v", err)
			}
			if got != tc.want {
				t.Errorf("pattern %s matched=%v, want %v", tc.pattern, got, tc.want)
			}
		})
	}
}

func TestPatternRejected(t *testing.T) {
	tests := []struct {
		name, pattern string
		unsupported   bool   // ErrUnsupportedPattern, not just malformed
		mention       string // the error names the operator or problem
	}{
		{"numeric", `{"detail":{"object":{"size":[{"numeric":[">",0]}]}}}`, true, "numeric"},
		{"cidr", `{"detail":{"source-ip-address":[{"cidr":"10.0.0.0/8"}]}}`, true, "cidr"},
		{"$or", `{"$or":[{"source":["aws.s3"]},{"source":["ferry.gateway"]}]}`, true, "$or"},
		{"anything-but prefix among other values", `{"detail":{"reason":["x",{"anything-but":{"prefix":"Put"}}]}}`, true, "only value"},
		{"anything-but wildcard", `{"detail":{"reason":[{"anything-but":{"wildcard":"P*"}}]}}`, true, "anything-but"},
		{"anything-but prefix number", `{"detail":{"reason":[{"anything-but":{"prefix":5}}]}}`, true, "anything-but"},
		{"anything-but two operators", `{"detail":{"reason":[{"anything-but":{"prefix":"a","suffix":"b"}}]}}`, false, "exactly one"},
		{"anything-but numbers", `{"detail":{"object":{"size":[{"anything-but":[1,2]}]}}}`, true, "anything-but"},
		{"prefix ignore case", `{"detail":{"object":{"key":[{"prefix":{"equals-ignore-case":"in"}}]}}}`, true, "prefix"},
		{"suffix ignore case", `{"detail":{"object":{"key":[{"suffix":{"equals-ignore-case":".csv"}}]}}}`, true, "suffix"},
		{"suffix with star", `{"detail":{"object":{"key":[{"suffix":"*.csv"}]}}}`, true, "suffix"},
		{"wildcard adjacent stars", `{"detail":{"object":{"key":[{"wildcard":"a/**/b"}]}}}`, true, "adjacent"},
		{"wildcard escape", `{"detail":{"object":{"key":[{"wildcard":"a\\*b"}]}}}`, true, "escape"},
		{"unknown operator", `{"source":[{"regex":"a.*"}]}`, true, "regex"},
		{"leaf not in array", `{"source":"aws.s3"}`, false, "array"},
		{"not an object", `["aws.s3"]`, false, "object"},
		{"empty", `{}`, false, "empty"},
		{"bad json", `{"source":`, false, "parse"},
		{"two operators", `{"source":[{"prefix":"a","suffix":"b"}]}`, false, "exactly one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompilePattern(tc.pattern)
			if err == nil {
				t.Fatalf("pattern %s accepted, want an error", tc.pattern)
			}
			if got := errors.Is(err, ErrUnsupportedPattern); got != tc.unsupported {
				t.Errorf("errors.Is(ErrUnsupportedPattern) = %v, want %v (%v)", got, tc.unsupported, err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

// A rule with the deployed transform rule's exclusion gets every Object Created event except
// those of keys under .ferry/ (the pipeline ledger's own writes).
func TestRuleExcludesPrefix(t *testing.T) {
	b := openBus(t, t.TempDir(), testConfig())
	r := newRecorder()
	pattern := `{"source":["aws.s3"],"detail-type":["Object Created"],"detail":{"object":{"key":[{"anything-but":{"prefix":".ferry/"}}]}}}`
	if err := b.AddRule(Rule{Name: "transform", Pattern: pattern, Target: r}); err != nil {
		t.Fatal(err)
	}
	keys := []string{"incoming/a.csv", ".ferry/ledger/object/1", "processed/a.jsonl", ".ferry/ledger/notify/1", ".ferryish/b.csv"}
	for _, k := range keys {
		if err := b.Put(context.Background(), created(t, k)); err != nil {
			t.Fatal(err)
		}
	}
	closeBus(t, b) // delivers everything logged
	got := r.keys()
	for _, k := range keys {
		if want := !strings.HasPrefix(k, ".ferry/"); (got[k] > 0) != want {
			t.Errorf("%s delivered %d times, want delivered: %v", k, got[k], want)
		}
	}
}
