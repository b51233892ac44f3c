package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"list-type=2&prefix=incoming%2F", "list-type=2&prefix=incoming%2F"},
		{"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261205%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=ab12cd&X-Amz-SignedHeaders=host",
			"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261205%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=REDACTED&X-Amz-SignedHeaders=host"},
		{"https://b.s3.amazonaws.com/k?X-Amz-Security-Token=FwoG%2Fabc&x-amz-signature=ff00", "https://b.s3.amazonaws.com/k?X-Amz-Security-Token=REDACTED&x-amz-signature=REDACTED"},
		{`GET "https://h/k?X-Amz-Signature=ab#frag"`, `GET "https://h/k?X-Amz-Signature=REDACTED#frag"`},
		{"https://h/k?AWSAccessKeyId=AKIA&Signature=abc%2B%3D&Expires=1", "https://h/k?AWSAccessKeyId=AKIA&Signature=REDACTED&Expires=1"}, // SigV2
		{"X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host"},
		{"mySignature=keep", "mySignature=keep"},
	}
	for _, tt := range tests {
		if got := String(tt.in); got != tt.want {
			t.Errorf("String(%q)\n = %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func TestReplaceAttr(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: ReplaceAttr}))
	u, _ := url.Parse("http://127.0.0.1:9000/b/k?X-Amz-Signature=deadbeef")
	log.Info("fetch http://h/k?X-Amz-Signature=deadbeef", "url", u, "query", u.RawQuery,
		"err", errors.New(`Get "http://h/k?X-Amz-Security-Token=deadbeef": EOF`), "n", 3)
	if strings.Contains(buf.String(), "deadbeef") || strings.Count(buf.String(), Replacement) != 4 || !strings.Contains(buf.String(), `"n":3`) {
		t.Errorf("log line: %s", buf.String())
	}
}
