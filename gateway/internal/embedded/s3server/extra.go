package s3server

import (
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/johannesboyne/gofakes3"

	"github.com/ferrygw/ferry/gateway/internal/embedded/s3disk"
)

// Subresources gofakes3 v1.2.0 does not route: it would treat `PUT /b/k?acl` as a PutObject
// of the ACL document, and `GET /b/k?attributes` as a GetObject. Answer 501 instead.
var unsupported = []string{
	"accelerate", "acl", "analytics", "attributes", "cors", "encryption", "intelligent-tiering",
	"inventory", "legal-hold", "lifecycle", "logging", "metadataTable", "metrics", "notification",
	"object-lock", "ownershipControls", "policy", "policyStatus", "publicAccessBlock", "replication",
	"requestPayment", "restore", "retention", "select", "torrent", "website",
}

const maxXMLBody = 1 << 20

// serveExtra answers what gofakes3 does not: object tagging, UploadPartCopy, and a clear 501
// for subresources it would misroute. It reports whether it wrote the response.
func (s *Server) serveExtra(w http.ResponseWriter, r *http.Request, st *reqState) bool {
	q := r.URL.Query()
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch {
	case has(q, "tagging") && key != "":
		s.serveTagging(w, r, st, bucket, key)
	case key != "" && r.Method == http.MethodPut && q.Get("uploadId") != "" && r.Header.Get("X-Amz-Copy-Source") != "":
		s.serveUploadPartCopy(w, r, st, bucket, key)
	case has(q, "tagging"):
		writeError(w, r, st.id, &apiError{status: http.StatusNotImplemented, code: "NotImplemented", msg: "bucket tagging is not supported"})
	case r.Method == http.MethodPost && key == "" && !has(q, "delete"):
		writeError(w, r, st.id, &apiError{status: http.StatusNotImplemented, code: "NotImplemented", msg: "browser-based POST uploads are not supported"})
	default:
		for _, sub := range unsupported {
			if has(q, sub) {
				writeError(w, r, st.id, &apiError{status: http.StatusNotImplemented, code: "NotImplemented", msg: "?" + sub + " is not supported"})
				return true
			}
		}
		return false
	}
	return true
}

func has(q url.Values, k string) bool { _, ok := q[k]; return ok }

type tagXML struct {
	Key   string `xml:"Key"`
	Value string `xml:"Value"`
}

type taggingXML struct {
	XMLName xml.Name `xml:"Tagging"`
	Xmlns   string   `xml:"xmlns,attr,omitempty"`
	TagSet  []tagXML `xml:"TagSet>Tag"`
}

func (s *Server) serveTagging(w http.ResponseWriter, r *http.Request, st *reqState, bucket, key string) {
	switch r.Method {
	case http.MethodGet:
		tags, err := s.disk.Tags(bucket, key)
		if err != nil {
			writeS3Error(w, r, st.id, err)
			return
		}
		out := taggingXML{Xmlns: "http://s3.amazonaws.com/doc/2006-03-01/", TagSet: []tagXML{}}
		for k, v := range tags {
			out.TagSet = append(out.TagSet, tagXML{k, v})
		}
		sort.Slice(out.TagSet, func(i, j int) bool { return out.TagSet[i].Key < out.TagSet[j].Key })
		writeXML(w, http.StatusOK, out)
	case http.MethodPut:
		var in taggingXML
		if err := decodeXML(r.Body, &in); err != nil {
			writeS3Error(w, r, st.id, err)
			return
		}
		tags := map[string]string{}
		for _, t := range in.TagSet {
			if _, dup := tags[t.Key]; dup {
				writeS3Error(w, r, st.id, gofakes3.ErrorMessage(s3disk.CodeInvalidTag, "Cannot provide multiple Tags with the same key"))
				return
			}
			tags[t.Key] = t.Value
		}
		if err := s.disk.SetTags(bucket, key, tags); err != nil {
			writeS3Error(w, r, st.id, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodDelete:
		if err := s.disk.SetTags(bucket, key, nil); err != nil {
			writeS3Error(w, r, st.id, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		writeS3Error(w, r, st.id, gofakes3.ErrMethodNotAllowed)
	}
}

type copyPartResult struct {
	XMLName      xml.Name `xml:"CopyPartResult"`
	ETag         string   `xml:"ETag"`
	LastModified string   `xml:"LastModified"`
}

// serveUploadPartCopy: gofakes3 v1.2.0 would read the (empty) body as the part.
func (s *Server) serveUploadPartCopy(w http.ResponseWriter, r *http.Request, st *reqState, bucket, key string) {
	q := r.URL.Query()
	part, err := strconv.Atoi(q.Get("partNumber"))
	if err != nil {
		writeS3Error(w, r, st.id, gofakes3.ErrInvalidPart)
		return
	}
	srcBucket, srcKey, err := parseCopySource(r.Header.Get("X-Amz-Copy-Source"))
	if err != nil {
		writeS3Error(w, r, st.id, err)
		return
	}
	var rng *gofakes3.ObjectRangeRequest
	if v := r.Header.Get("X-Amz-Copy-Source-Range"); v != "" {
		if rng, err = parseCopyRange(v); err != nil {
			writeS3Error(w, r, st.id, err)
			return
		}
	}
	src, err := s.disk.Stat(srcBucket, srcKey)
	if err == nil {
		err = checkCopySource(r.Header, src)
	}
	if err != nil {
		writeS3Error(w, r, st.id, err)
		return
	}
	etag, mod, err := s.disk.UploadPartCopy(bucket, key, gofakes3.UploadID(q.Get("uploadId")), part, srcBucket, srcKey, rng)
	if err != nil {
		writeS3Error(w, r, st.id, err)
		return
	}
	writeXML(w, http.StatusOK, copyPartResult{ETag: etag, LastModified: mod.UTC().Format("2006-01-02T15:04:05.000Z")})
}

// parseCopySource splits "bucket/key" (optionally with a leading slash and ?versionId),
// the key URL-encoded.
func parseCopySource(v string) (bucket, key string, err error) {
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "/"), "?")
	b, k, ok := strings.Cut(v, "/")
	if !ok {
		if dec, derr := url.PathUnescape(v); derr == nil {
			b, k, ok = strings.Cut(strings.TrimPrefix(dec, "/"), "/")
			if ok {
				return b, k, nil
			}
		}
		return "", "", gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "x-amz-copy-source must be bucket/key")
	}
	if k, err = url.PathUnescape(k); err != nil {
		return "", "", gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "x-amz-copy-source is not URL-encoded")
	}
	return b, k, nil
}

// parseCopyRange parses "bytes=first-last" (both required for UploadPartCopy).
func parseCopyRange(v string) (*gofakes3.ObjectRangeRequest, error) {
	spec, ok := strings.CutPrefix(v, "bytes=")
	first, last, ok2 := strings.Cut(spec, "-")
	a, err1 := strconv.ParseInt(first, 10, 64)
	z, err2 := strconv.ParseInt(last, 10, 64)
	if !ok || !ok2 || err1 != nil || err2 != nil || a < 0 || z < a {
		return nil, gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
	}
	return &gofakes3.ObjectRangeRequest{Start: a, End: z}, nil
}

func decodeXML(body io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(body, maxXMLBody+1))
	if err != nil {
		return err
	}
	if len(data) > maxXMLBody {
		return gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "document too large")
	}
	if err := xml.Unmarshal(data, v); err != nil {
		return gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, err.Error())
	}
	return nil
}

func writeXML(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	io.WriteString(w, xml.Header)
	xml.NewEncoder(w).Encode(v)
}

type errorXML struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message,omitempty"`
	Resource  string   `xml:"Resource,omitempty"`
	RequestID string   `xml:"RequestId,omitempty"`
}

func writeError(w http.ResponseWriter, r *http.Request, reqID string, e *apiError) {
	if r.Method == http.MethodHead {
		w.WriteHeader(e.status)
		return
	}
	writeXML(w, e.status, errorXML{Code: e.code, Message: e.msg, Resource: r.URL.Path, RequestID: reqID})
}

// writeS3Error answers with a gofakes3 / s3disk error (or a 500 for anything else).
func writeS3Error(w http.ResponseWriter, r *http.Request, reqID string, err error) {
	e := &apiError{status: http.StatusInternalServerError, code: string(gofakes3.ErrInternal), msg: "We encountered an internal error. Please try again."}
	var s3err gofakes3.Error
	if errors.As(err, &s3err) {
		e.code, e.status = string(s3err.ErrorCode()), statusOf(s3err.ErrorCode())
		var resp *gofakes3.ErrorResponse
		if errors.As(err, &resp) && resp.Message != "" {
			e.msg = resp.Message
		} else {
			e.msg = e.code
		}
	}
	writeError(w, r, reqID, e)
}
