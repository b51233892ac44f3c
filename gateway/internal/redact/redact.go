// Package redact keeps bearer secrets out of logs: the signature and session token of a
// pre-signed S3 URL (or any SigV4 query), which grant access to whoever holds them until they
// expire.
package redact

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

// Replacement stands for a redacted value.
const Replacement = "REDACTED"

// secretParams are the query parameters whose values are secrets: the signature, the session
// token of temporary credentials, and the signature of a POST policy. (X-Amz-Credential names
// an access key id, which AWS does not treat as a secret; it stays, to say who signed.)
var secretParams = regexp.MustCompile(`(?i)((?:^|[?&\s"'])(?:X-Amz-Signature|X-Amz-Security-Token|Signature)=)[^&\s"'#]*`)

// String returns s with the values of secret query parameters replaced by Replacement.
func String(s string) string {
	if !strings.Contains(strings.ToLower(s), "signature=") && !strings.Contains(strings.ToLower(s), "security-token=") {
		return s
	}
	return secretParams.ReplaceAllString(s, "${1}"+Replacement)
}

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that redacts secret query parameters from
// every string, error and Stringer value, and the message.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch v := a.Value; v.Kind() {
	case slog.KindString:
		if r := String(v.String()); r != v.String() {
			a.Value = slog.StringValue(r)
		}
	case slog.KindAny:
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			return a
		}
		if r := String(s); r != s {
			a.Value = slog.StringValue(r)
		}
	}
	return a
}
