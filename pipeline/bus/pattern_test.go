package bus

import (
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
		{"anything-but prefix", `{"detail":{"reason":[{"anything-but":{"prefix":"Put"}}]}}`, true, "anything-but"},
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
