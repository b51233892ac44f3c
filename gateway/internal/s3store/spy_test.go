package s3store

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// spy passes every call to a real S3 client, counting calls and optionally failing some, so
// tests can see how many requests an operation makes and what a failure mid-way leaves behind.
type spy struct {
	API
	mu       sync.Mutex
	calls    map[string]int
	inflight int // UploadParts in flight
	maxParts int // most UploadParts seen in flight at once

	failPart     func(part int32) error // UploadPart fails when it returns an error
	failComplete error
	failCopy     func(n int) error // n-th CopyObject (1-based) fails when it returns an error
	loseCreate   error             // CreateMultipartUpload starts the upload, then returns this
}

func (s *spy) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, o ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	s.count("CreateMultipartUpload")
	out, err := s.API.CreateMultipartUpload(ctx, in, o...)
	if err == nil && s.loseCreate != nil {
		return nil, s.loseCreate // as when the answer is lost and the SDK's retries fail
	}
	return out, err
}

func newSpy(api API) *spy { return &spy{API: api, calls: map[string]int{}} }

func (s *spy) count(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	return s.calls[op]
}

func (s *spy) n(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *spy) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
}

func (s *spy) HeadObject(ctx context.Context, in *s3.HeadObjectInput, o ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	s.count("HeadObject")
	return s.API.HeadObject(ctx, in, o...)
}

func (s *spy) GetObject(ctx context.Context, in *s3.GetObjectInput, o ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	s.count("GetObject")
	return s.API.GetObject(ctx, in, o...)
}

func (s *spy) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, o ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	s.count("ListObjectsV2")
	return s.API.ListObjectsV2(ctx, in, o...)
}

func (s *spy) GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, o ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error) {
	s.count("GetObjectTagging")
	return s.API.GetObjectTagging(ctx, in, o...)
}

func (s *spy) PutObjectTagging(ctx context.Context, in *s3.PutObjectTaggingInput, o ...func(*s3.Options)) (*s3.PutObjectTaggingOutput, error) {
	s.count("PutObjectTagging")
	return s.API.PutObjectTagging(ctx, in, o...)
}

func (s *spy) PutObject(ctx context.Context, in *s3.PutObjectInput, o ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	s.count("PutObject")
	return s.API.PutObject(ctx, in, o...)
}

func (s *spy) CopyObject(ctx context.Context, in *s3.CopyObjectInput, o ...func(*s3.Options)) (*s3.CopyObjectOutput, error) {
	n := s.count("CopyObject")
	if s.failCopy != nil {
		if err := s.failCopy(n); err != nil {
			return nil, err
		}
	}
	return s.API.CopyObject(ctx, in, o...)
}

func (s *spy) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, o ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	s.count("UploadPartCopy")
	return s.API.UploadPartCopy(ctx, in, o...)
}

func (s *spy) UploadPart(ctx context.Context, in *s3.UploadPartInput, o ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	s.count("UploadPart")
	s.mu.Lock()
	s.inflight++
	s.maxParts = max(s.maxParts, s.inflight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.mu.Unlock()
	}()
	if s.failPart != nil {
		if err := s.failPart(*in.PartNumber); err != nil {
			return nil, err
		}
	}
	return s.API.UploadPart(ctx, in, o...)
}

func (s *spy) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, o ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	s.count("CompleteMultipartUpload")
	if s.failComplete != nil {
		return nil, s.failComplete
	}
	return s.API.CompleteMultipartUpload(ctx, in, o...)
}

func (s *spy) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, o ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	s.count("AbortMultipartUpload")
	return s.API.AbortMultipartUpload(ctx, in, o...)
}
