package s3server

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/johannesboyne/gofakes3"
)

// Users' access keys. The static key (Config.AccessKey) is the gateway's and the pipeline's
// and may do anything; a user's key (Config.Keys) may do, inside the user's home, what the
// user's permissions allow over SFTP and FTP — the same operations `ferry user s3-policy`
// grants a partner's IAM principal on AWS (package iampolicy):
//
//	list       ListObjects(V2) with a prefix inside the home (s3:ListBucket with s3:prefix)
//	download   GetObject, HeadObject, GetObjectTagging; a copy's source
//	upload     PutObject, CopyObject, multipart uploads of a key that does not exist
//	overwrite  the same over a key that exists
//	delete     DeleteObject, DeleteObjects of keys inside the home
//
// Upload without overwrite (or the reverse) is decided as over SFTP: by whether the key exists
// when the write arrives (a PutObject also gets If-None-Match: *, so a racing writer is never
// replaced). IAM cannot look, so on AWS the policy makes such a partner send the conditional
// header instead.
//
// Everything else is refused with AccessDenied: other buckets, keys outside the home, bucket
// operations, listing uploads or versions, ACLs and policies, and writing tags (Ferry records
// the SHA-256 it computed in the tag ferry-sha256, which a partner must not forge). The
// gateway's attribution metadata (x-amz-meta-ferry-*) of a user's write is Ferry's: whatever the
// client sends there is replaced by the user, protocol "s3", the client's address and the
// request id as transfer id, so the pipeline and `ferry trace` name the real uploader.

// Grant is what one user's access key may do.
type Grant struct {
	User                                      string
	Bucket                                    string
	Home                                      string // key prefix ending in "/"; "" is the whole bucket
	List, Download, Upload, Overwrite, Delete bool
}

// Keys finds users' access keys.
type Keys interface {
	// S3Key returns the secret and grant of access key id used from remote. ok is false for a
	// key it does not know (nor a disabled user's). An error refuses the request with
	// AccessDenied; its text is logged, never sent.
	S3Key(id string, remote netip.Addr) (secret string, g Grant, ok bool, err error)
}

// refusal is a request a grant does not allow, with why (for the log).
type refusal struct{ why string }

func (r *refusal) Error() string { return r.why }

func refuse(format string, args ...any) *refusal { return &refusal{why: fmt.Sprintf(format, args...)} }

// listParams are the query parameters of ListObjects and ListObjectsV2.
var listParams = map[string]bool{
	"list-type": true, "prefix": true, "delimiter": true, "max-keys": true, "continuation-token": true,
	"start-after": true, "fetch-owner": true, "encoding-type": true, "marker": true,
}

// readParams may come with a GET or HEAD of an object.
var readParams = map[string]bool{
	"versionId": true, "partNumber": true, "response-content-type": true, "response-content-language": true,
	"response-expires": true, "response-cache-control": true, "response-content-disposition": true, "response-content-encoding": true,
}

// onlyParams reports whether every query parameter of q is in one of allowed, the SDK's x-id,
// or an X-Amz-* parameter (a presigned URL's signature and the headers it carries, such as
// X-Amz-Checksum-Mode; the server reads metadata, tags and copy sources from headers only):
// an operation is known by its parameters, and an unknown one is refused.
func onlyParams(q url.Values, allowed ...map[string]bool) bool {
next:
	for k := range q {
		if k == "x-id" || len(k) > 6 && strings.EqualFold(k[:6], "x-amz-") {
			continue
		}
		for _, a := range allowed {
			if a[k] {
				continue next
			}
		}
		return false
	}
	return true
}

func within(key, home string) bool { return strings.HasPrefix(key, home) }

// authorize checks a user's request against g and makes its writes carry the user's
// attribution. Called after the body was prepared (DeleteObjects' body is read here).
func (s *Server) authorize(r *http.Request, st *reqState, g *Grant) error {
	q := r.URL.Query()
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if bucket == "" {
		return refuse("lists buckets")
	}
	if bucket != g.Bucket {
		return refuse("bucket %q is not the user's (%q)", bucket, g.Bucket)
	}
	if key == "" {
		return s.authorizeBucket(r, q, g)
	}
	if !within(key, g.Home) {
		return refuse("key %q is outside the home %q", key, g.Home)
	}
	h := r.Header
	if h.Get("X-Amz-Tagging") != "" || strings.EqualFold(h.Get("X-Amz-Tagging-Directive"), "REPLACE") {
		return refuse("sets object tags")
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case has(q, "uploadId"): // ListParts
			return needWrite(g)
		case has(q, "tagging") && onlyParams(q, map[string]bool{"tagging": true}) || onlyParams(q, readParams):
			if !g.Download {
				return refuse("no download permission")
			}
			return nil
		}
	case http.MethodPut:
		switch {
		case has(q, "tagging"):
			return refuse("sets object tags")
		case q.Get("uploadId") != "" && onlyParams(q, map[string]bool{"uploadId": true, "partNumber": true}): // UploadPart(Copy)
			if err := needWrite(g); err != nil {
				return err
			}
			return s.checkCopySource(h, g)
		case onlyParams(q):
			if h.Get("X-Amz-Copy-Source") != "" { // CopyObject
				if err := s.checkCopySource(h, g); err != nil {
					return err
				}
				if err := s.checkWrite(bucket, key, g); err != nil {
					return err
				}
				if strings.EqualFold(h.Get("X-Amz-Metadata-Directive"), "REPLACE") {
					attribute(r, st, g)
				}
				return nil
			}
			if err := s.checkWrite(bucket, key, g); err != nil { // PutObject
				return err
			}
			if g.Upload && !g.Overwrite && h.Get("If-None-Match") == "" && h.Get("If-Match") == "" {
				h.Set("If-None-Match", "*") // create-only, atomically: a racing writer cannot be overwritten
			}
			attribute(r, st, g)
			return nil
		}
	case http.MethodPost:
		switch {
		case has(q, "uploads") && onlyParams(q, map[string]bool{"uploads": true}): // CreateMultipartUpload
			if err := needWrite(g); err != nil {
				return err
			}
			attribute(r, st, g)
			return nil
		case q.Get("uploadId") != "" && onlyParams(q, map[string]bool{"uploadId": true}): // CompleteMultipartUpload
			return s.checkWrite(bucket, key, g)
		}
	case http.MethodDelete:
		switch {
		case q.Get("uploadId") != "" && onlyParams(q, map[string]bool{"uploadId": true}): // AbortMultipartUpload
			return needWrite(g)
		case onlyParams(q, map[string]bool{"versionId": true}):
			if !g.Delete {
				return refuse("no delete permission")
			}
			return nil
		}
	}
	return refuse("%s %s?%s is not an operation users' keys may call", r.Method, r.URL.Path, r.URL.RawQuery)
}

func (s *Server) authorizeBucket(r *http.Request, q url.Values, g *Grant) error {
	switch {
	case r.Method == http.MethodGet && onlyParams(q, listParams):
		if !g.List {
			return refuse("no list permission")
		}
		if p := q.Get("prefix"); !within(p, g.Home) {
			return refuse("lists prefix %q outside the home %q", p, g.Home)
		}
		return nil
	case r.Method == http.MethodHead && onlyParams(q):
		// HeadBucket is s3:ListBucket on AWS, without a prefix: only a user of the whole bucket.
		if !g.List || g.Home != "" {
			return refuse("HeadBucket needs list permission on the whole bucket")
		}
		return nil
	case r.Method == http.MethodPost && has(q, "delete"):
		if !g.Delete {
			return refuse("no delete permission")
		}
		return checkDeleteKeys(r, g)
	}
	return refuse("bucket operation %s ?%s", r.Method, r.URL.RawQuery)
}

// checkDeleteKeys reads a DeleteObjects body and refuses it when a key is outside the home;
// the body is put back for gofakes3.
func checkDeleteKeys(r *http.Request, g *Grant) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxXMLBody+1))
	if err != nil {
		return err
	}
	if len(data) > maxXMLBody {
		return gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "document too large")
	}
	var req struct {
		Objects []struct {
			Key string `xml:"Key"`
		} `xml:"Object"`
	}
	if err := xml.Unmarshal(data, &req); err != nil {
		return gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, err.Error())
	}
	for _, o := range req.Objects {
		if !within(o.Key, g.Home) {
			return refuse("deletes %q outside the home %q", o.Key, g.Home)
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	return nil
}

func needWrite(g *Grant) error {
	if !g.Upload && !g.Overwrite {
		return refuse("no upload or overwrite permission")
	}
	return nil
}

// checkWrite allows a write of bucket/key by what exists there now: a new key needs upload, an
// existing one overwrite (as over SFTP and FTP, the existence is read just before).
func (s *Server) checkWrite(bucket, key string, g *Grant) error {
	if err := needWrite(g); err != nil || g.Upload && g.Overwrite {
		return err
	}
	_, err := s.disk.Stat(bucket, key)
	exists := err == nil
	var e gofakes3.Error
	if err != nil && !(errors.As(err, &e) && e.ErrorCode() == gofakes3.ErrNoSuchKey) {
		return err
	}
	switch {
	case exists && !g.Overwrite:
		return refuse("%s exists and the user may not overwrite", key)
	case !exists && !g.Upload:
		return refuse("%s does not exist and the user may only overwrite", key)
	}
	return nil
}

// checkCopySource allows a copy's source only inside the home and with download permission.
func (s *Server) checkCopySource(h http.Header, g *Grant) error {
	src := h.Get("X-Amz-Copy-Source")
	if src == "" {
		return nil
	}
	bucket, key, err := parseCopySource(src)
	if err != nil {
		return err
	}
	if bucket != g.Bucket || !within(key, g.Home) {
		return refuse("copies from s3://%s/%s, outside the home", bucket, key)
	}
	if !g.Download {
		return refuse("copies without download permission")
	}
	return nil
}

// attribute replaces the attribution metadata of a user's write with the user's.
func attribute(r *http.Request, st *reqState, g *Grant) {
	for k := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-meta-ferry-") {
			r.Header.Del(k)
		}
	}
	r.Header.Set("X-Amz-Meta-Ferry-User", g.User)
	r.Header.Set("X-Amz-Meta-Ferry-Protocol", "s3")
	r.Header.Set("X-Amz-Meta-Ferry-Client", r.RemoteAddr)
	r.Header.Set("X-Amz-Meta-Ferry-Transfer-Id", strings.ToLower(st.id))
}
