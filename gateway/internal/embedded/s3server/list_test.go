package s3server

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestListDelimiter(t *testing.T) {
	h := newHarness(t)
	keys := []string{"a", "a/b", "a/c/d", "a/c/e", "a/f", "b/", "b/x", "c", "c.txt", "d/e/f"}
	for _, k := range keys {
		h.put(k, k)
	}
	for _, tc := range []struct {
		prefix, delim  string
		keys, prefixes string
	}{
		{"", "", strings.Join(keys, ","), ""},
		{"", "/", "a,c,c.txt", "a/,b/,d/"},
		{"a/", "/", "a/b,a/f", "a/c/"},
		{"a", "/", "a", "a/"},
		{"b/", "/", "b/,b/x", ""},
		{"c", "", "c,c.txt", ""},
		{"a/c/", "", "a/c/d,a/c/e", ""},
		{"", ".", "a,a/b,a/c/d,a/c/e,a/f,b/,b/x,c,d/e/f", "c."},
		{"zz", "/", "", ""},
	} {
		var gotKeys, gotPrefixes []string
		// One key per page as well, so prefixes and keys are paginated together.
		for _, max := range []int32{1000, 1} {
			in := &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String(tc.prefix), MaxKeys: aws.Int32(max)}
			if tc.delim != "" {
				in.Delimiter = aws.String(tc.delim)
			}
			gotKeys, gotPrefixes = nil, nil
			p := s3.NewListObjectsV2Paginator(h.client, in)
			for pages := 0; p.HasMorePages(); pages++ {
				if pages > 20 {
					t.Fatalf("%+v: pagination does not end", tc)
				}
				out, err := p.NextPage(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if n := len(out.Contents) + len(out.CommonPrefixes); int32(n) > max || aws.ToInt32(out.KeyCount) != int32(n) {
					t.Errorf("%+v max %d: page of %d, KeyCount %d", tc, max, n, aws.ToInt32(out.KeyCount))
				}
				for _, o := range out.Contents {
					gotKeys = append(gotKeys, aws.ToString(o.Key))
				}
				for _, cp := range out.CommonPrefixes {
					gotPrefixes = append(gotPrefixes, aws.ToString(cp.Prefix))
				}
			}
			if strings.Join(gotKeys, ",") != tc.keys || strings.Join(gotPrefixes, ",") != tc.prefixes {
				t.Errorf("prefix %q delim %q max %d: keys %q prefixes %q, want %q / %q",
					tc.prefix, tc.delim, max, gotKeys, gotPrefixes, tc.keys, tc.prefixes)
			}
		}
	}
	// ListObjects (v1) with a marker.
	out, err := h.client.ListObjects(t.Context(), &s3.ListObjectsInput{Bucket: aws.String(testBucket), Marker: aws.String("a/f"), Delimiter: aws.String("/")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range out.Contents {
		got = append(got, aws.ToString(o.Key))
	}
	for _, cp := range out.CommonPrefixes {
		got = append(got, aws.ToString(cp.Prefix))
	}
	if strings.Join(got, ",") != "c,c.txt,b/,d/" {
		t.Errorf("v1 after a/f: %q", got)
	}
}

func TestListManyKeys(t *testing.T) {
	h := newHarness(t)
	const n = 1234
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("many/%05d", i))
	}
	// Put in parallel, in an order unlike the listing's.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan string)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				_, err := h.client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k), Body: strings.NewReader(k)})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		work <- want[(i*7919)%n]
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var got []string
	pages := 0
	p := s3.NewListObjectsV2Paginator(h.client, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String("many/")})
	for p.HasMorePages() {
		out, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range out.Contents {
			got = append(got, aws.ToString(o.Key))
			if aws.ToInt64(o.Size) != int64(len(*o.Key)) || aws.ToString(o.ETag) != `"`+md5hex(*o.Key)+`"` {
				t.Errorf("%s: size %d etag %s", *o.Key, aws.ToInt64(o.Size), aws.ToString(o.ETag))
			}
		}
	}
	if pages != 2 || !slices.Equal(got, want) {
		t.Errorf("%d pages, %d keys (want 2 pages of %d keys in order)", pages, len(got), n)
	}
	// v1 pagination by marker, 500 at a time.
	got = nil
	marker := ""
	for {
		out, err := h.client.ListObjects(t.Context(), &s3.ListObjectsInput{Bucket: aws.String(testBucket), Marker: aws.String(marker), MaxKeys: aws.Int32(500)})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out.Contents {
			got = append(got, aws.ToString(o.Key))
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		marker = got[len(got)-1]
	}
	if !slices.Equal(got, want) {
		t.Errorf("v1: %d keys", len(got))
	}
}
