package s3server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SigV4 verification (gofakes3 v1.2.0 accepts any request): the Authorization header form and
// presigned URLs, as described in AWS's "Signature Version 4 for Amazon S3" documentation.

const (
	algorithm     = "AWS4-HMAC-SHA256"
	maxSkew       = 15 * time.Minute
	maxPresignAge = 7 * 24 * time.Hour
	amzDateFormat = "20060102T150405Z"

	unsignedPayload = "UNSIGNED-PAYLOAD"
)

// apiError is an S3 error answered by this package rather than by gofakes3.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func denied(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusForbidden, code: code, msg: fmt.Sprintf(format, args...)}
}

func badRequest(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

// auth is a verified request's signing context, which chunk signatures chain from.
type auth struct {
	accessKey   string
	grant       *Grant // a user's key: what it may do; nil for the static key
	signingKey  []byte
	amzDate     string
	scope       string
	seed        string // the request signature
	payloadHash string
}

func (s *Server) authenticate(r *http.Request, now time.Time) (*auth, *apiError) {
	if h := r.Header.Get("Authorization"); h != "" {
		return s.authHeader(r, h, now)
	}
	if r.URL.Query().Get("X-Amz-Signature") != "" {
		return s.authQuery(r, now)
	}
	return nil, denied("AccessDenied", "Access Denied: anonymous requests are not accepted")
}

func (s *Server) authHeader(r *http.Request, h string, now time.Time) (*auth, *apiError) {
	rest, ok := strings.CutPrefix(h, algorithm+" ")
	if !ok {
		return nil, badRequest("AuthorizationHeaderMalformed", "only %s signatures are supported", algorithm)
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	cred, signed, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	if cred == "" || signed == "" || sig == "" {
		return nil, badRequest("AuthorizationHeaderMalformed", "the authorization header is malformed")
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		if d, err := http.ParseTime(r.Header.Get("Date")); err == nil {
			amzDate = d.UTC().Format(amzDateFormat)
		}
	}
	a, aerr := s.checkCredential(r, cred, amzDate, now, 0)
	if aerr != nil {
		return nil, aerr
	}
	a.payloadHash = r.Header.Get("X-Amz-Content-Sha256")
	if a.payloadHash == "" {
		return nil, badRequest("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
	}
	if aerr := a.verify(r, strings.Split(signed, ";"), sig, ""); aerr != nil {
		return nil, aerr
	}
	return a, nil
}

func (s *Server) authQuery(r *http.Request, now time.Time) (*auth, *apiError) {
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != algorithm {
		return nil, badRequest("AuthorizationQueryParametersError", "X-Amz-Algorithm only supports %q", algorithm)
	}
	expires, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || expires < 1 || time.Duration(expires)*time.Second > maxPresignAge {
		return nil, badRequest("AuthorizationQueryParametersError", "X-Amz-Expires must be a number of seconds between 1 and 604800")
	}
	a, aerr := s.checkCredential(r, q.Get("X-Amz-Credential"), q.Get("X-Amz-Date"), now, time.Duration(expires)*time.Second)
	if aerr != nil {
		return nil, aerr
	}
	a.payloadHash = unsignedPayload
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" {
		a.payloadHash = h
	}
	if aerr := a.verify(r, strings.Split(q.Get("X-Amz-SignedHeaders"), ";"), q.Get("X-Amz-Signature"), "X-Amz-Signature"); aerr != nil {
		return nil, aerr
	}
	return a, nil
}

// checkCredential checks "<key>/<yyyymmdd>/<region>/s3/aws4_request" and the request time: within
// the allowed skew, or for a presigned URL (valid > 0) not before it was signed nor after it expired.
func (s *Server) checkCredential(r *http.Request, cred, amzDate string, now time.Time, valid time.Duration) (*auth, *apiError) {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[3] != "s3" || parts[4] != "aws4_request" {
		return nil, badRequest("AuthorizationHeaderMalformed", "the credential %q is malformed", cred)
	}
	secret, grant, aerr := s.secretOf(r, parts[0])
	if aerr != nil {
		return nil, aerr
	}
	if s.cfg.Region != "" && parts[2] != s.cfg.Region {
		return nil, badRequest("AuthorizationHeaderMalformed", "the region %q is wrong; expecting %q", parts[2], s.cfg.Region)
	}
	t, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		return nil, denied("AccessDenied", "missing or malformed X-Amz-Date")
	}
	if t.Format("20060102") != parts[1] {
		return nil, badRequest("AuthorizationHeaderMalformed", "the credential date %q does not match X-Amz-Date", parts[1])
	}
	if valid > 0 {
		if now.Before(t.Add(-maxSkew)) {
			return nil, denied("AccessDenied", "Request is not valid yet")
		}
		if now.After(t.Add(valid)) {
			return nil, denied("AccessDenied", "Request has expired")
		}
	} else if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return nil, denied("RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
	}
	key := hmacSHA256([]byte("AWS4"+secret), parts[1])
	for _, p := range parts[2:] {
		key = hmacSHA256(key, p)
	}
	return &auth{accessKey: parts[0], grant: grant, signingKey: key, amzDate: amzDate, scope: strings.Join(parts[1:], "/")}, nil
}

var errUnknownKey = denied("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")

// secretOf returns the secret of access key id and, for a user's key, its grant.
func (s *Server) secretOf(r *http.Request, id string) (string, *Grant, *apiError) {
	if subtle.ConstantTimeCompare([]byte(id), []byte(s.cfg.AccessKey)) == 1 {
		return s.cfg.Secret, nil, nil
	}
	if s.cfg.Keys == nil {
		return "", nil, errUnknownKey
	}
	remote, _ := netip.ParseAddr(sourceIP(r))
	secret, g, ok, err := s.cfg.Keys.S3Key(id, remote.Unmap())
	switch {
	case err != nil:
		s.log.Info("user key refused", "access_key", id, "user", g.User, "remote", r.RemoteAddr, "reason", err)
		return "", nil, denied("AccessDenied", "Access Denied")
	case !ok:
		return "", nil, errUnknownKey
	}
	return secret, &g, nil
}

// verify compares sig with the signature of the canonical request. The path is tried as sent
// and, if different, re-encoded the way AWS's documentation says, since clients differ in which
// characters they escape.
func (a *auth) verify(r *http.Request, signed []string, sig, skipParam string) *apiError {
	if !slices.Contains(signed, "host") {
		return denied("AccessDenied", "the host header must be signed")
	}
	want, err := hex.DecodeString(sig)
	if err != nil {
		return denied("SignatureDoesNotMatch", "malformed signature")
	}
	headers := canonicalHeaders(r, signed)
	query := canonicalQuery(r.URL.RawQuery, skipParam)
	paths := []string{rawPath(r)}
	if p := encodePath(r.URL.Path); p != paths[0] {
		paths = append(paths, p)
	}
	for _, p := range paths {
		creq := strings.Join([]string{r.Method, p, query, headers, strings.Join(signed, ";"), a.payloadHash}, "\n")
		got := hmacSHA256(a.signingKey, a.stringToSign(algorithm, sha256Hex([]byte(creq))))
		if hmac.Equal(got, want) {
			a.seed = sig
			return nil
		}
	}
	return denied("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
}

func (a *auth) stringToSign(alg, hash string) string {
	return alg + "\n" + a.amzDate + "\n" + a.scope + "\n" + hash
}

func rawPath(r *http.Request) string {
	p := r.RequestURI
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" {
		return "/"
	}
	return p
}

func canonicalHeaders(r *http.Request, signed []string) string {
	var b strings.Builder
	for _, name := range signed {
		var vals []string
		switch name {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			vals = r.Header.Values("Content-Length")
			if len(vals) == 0 && r.ContentLength >= 0 {
				vals = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		case "transfer-encoding":
			vals = r.TransferEncoding
		default:
			vals = r.Header.Values(name)
		}
		b.WriteString(name)
		b.WriteByte(':')
		for i, v := range vals {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.Join(strings.Fields(v), " "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func canonicalQuery(raw, skip string) string {
	type kv struct{ k, v string }
	var params []kv
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		if dk, err := url.PathUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.PathUnescape(v); err == nil {
			v = dv
		}
		if k == skip {
			continue
		}
		params = append(params, kv{uriEncode(k, false), uriEncode(v, false)})
	}
	slices.SortFunc(params, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	parts := make([]string, len(params))
	for i, p := range params {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

func encodePath(p string) string {
	if p == "" {
		return "/"
	}
	return uriEncode(p, true)
}

// uriEncode escapes every byte except A-Z a-z 0-9 - . _ ~ (and / when keepSlash).
func uriEncode(s string, keepSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || (keepSlash && c == '/') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
