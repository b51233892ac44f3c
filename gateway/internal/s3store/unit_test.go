package s3store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

func TestClassify(t *testing.T) {
	status := func(code int) error {
		return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}},
			Err:      errors.New("boom"),
		}}
	}
	tests := []struct {
		err  error
		want error
	}{
		{&smithy.GenericAPIError{Code: "NoSuchKey"}, fs.ErrNotExist},
		{&smithy.GenericAPIError{Code: "NotFound"}, fs.ErrNotExist},
		{&smithy.GenericAPIError{Code: "NoSuchUpload"}, fs.ErrNotExist},
		{&smithy.GenericAPIError{Code: "AccessDenied"}, fs.ErrPermission},
		{&smithy.GenericAPIError{Code: "PreconditionFailed"}, fs.ErrExist},
		{&smithy.GenericAPIError{Code: "ExistingObjectIsDirectory"}, storage.ErrIsDir},
		{&smithy.GenericAPIError{Code: "ObjectParentIsFile"}, storage.ErrNotDir},
		{&smithy.GenericAPIError{Code: "KeyTooLongError"}, storage.ErrInvalidPath},
		{&smithy.GenericAPIError{Code: "EntityTooLarge"}, storage.ErrTooLarge},
		{&smithy.GenericAPIError{Code: "NotImplemented"}, storage.ErrUnsupported},
		{&smithy.GenericAPIError{Code: "SlowDown"}, nil},
		{status(404), fs.ErrNotExist},
		{status(403), fs.ErrPermission},
		{status(412), fs.ErrExist},
		{status(500), nil},
		{fmt.Errorf("op: %w", context.Canceled), nil},
		{errors.New("plain"), nil},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
		err := pathErr("stat", "/v/path", tt.err)
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Path != "/v/path" || pe.Op != "stat" {
			t.Errorf("pathErr(%v) = %#v", tt.err, err)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("pathErr(%v) lost the SDK error", tt.err)
		}
		if tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("pathErr(%v) is not %v", tt.err, tt.want)
		}
	}
	if pathErr("x", "/p", nil) != nil {
		t.Error("pathErr(nil) != nil")
	}
}

func TestNewConfig(t *testing.T) {
	api := &s3.Client{}
	tests := []struct {
		cfg Config
		ok  bool
	}{
		{Config{Bucket: "b"}, true},
		{Config{}, false},
		{Config{Bucket: "b", PartSize: 4 << 20}, false},
		{Config{Bucket: "b", PartSize: 6 << 30}, false},
		{Config{Bucket: "b", Concurrency: -1}, false},
		{Config{Bucket: "b", ListPageSize: 1001}, false},
	}
	for _, tt := range tests {
		s, err := New(api, tt.cfg)
		if (err == nil) != tt.ok {
			t.Errorf("New(%+v) = %v", tt.cfg, err)
		}
		if err == nil && (s.cfg.PartSize != 5<<20 || s.cfg.Concurrency != 4 || s.cfg.MaxRenameKeys != 1000) {
			t.Errorf("defaults: %+v", s.cfg)
		}
	}
	if _, err := New(nil, Config{Bucket: "b"}); err == nil {
		t.Error("New(nil) succeeded")
	}
}

// TestPartSizes checks the adaptive part size keeps any object S3 accepts within 10,000 parts.
func TestPartSizes(t *testing.T) {
	for _, base := range []int64{5 << 20, 8 << 20, 64 << 20} {
		u := &upload{h: &homeFS{s: &Store{cfg: Config{PartSize: base}}}}
		var total int64
		for n := int32(1); n <= maxParts; n++ {
			ps := u.partSize(n)
			if ps < base || ps > maxPartSize {
				t.Fatalf("base %d: part %d size %d", base, n, ps)
			}
			total += ps
		}
		if u.partSize(1) != base || u.partSize(1000) != base || u.partSize(1001) != 2*base {
			t.Errorf("base %d: sizes %d %d %d", base, u.partSize(1), u.partSize(1000), u.partSize(1001))
		}
		if total < 4<<40 {
			t.Errorf("base %d: 10,000 parts hold only %d bytes", base, total)
		}
	}
}

func TestAttrEncoding(t *testing.T) {
	for _, v := range []string{"plain", "dïana", "new\nline", "日本"} {
		enc := encodeMeta(v)
		for _, r := range enc {
			if r < 0x20 || r > 0x7e {
				t.Errorf("encodeMeta(%q) = %q is not printable ASCII", v, enc)
			}
		}
		if got := decodeMeta(enc); got != v {
			t.Errorf("decodeMeta(encodeMeta(%q)) = %q", v, got)
		}
	}
	if got := copySource("b", "a dir/x+y%2f/ü"); got != "b/a%20dir/x%2By%252f/%C3%BC" {
		t.Errorf("copySource = %q", got)
	}
}
