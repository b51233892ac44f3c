package tracking

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/s3status"
)

// ReadAPI is the S3 calls reading records needs; *s3.Client satisfies it.
type ReadAPI interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Reader reads the records of an Index.
type Reader struct {
	API   ReadAPI
	Index Index
}

// Day calls fn with every record of the files received on day (YYYY-MM-DD), in key order
// (grouped by file). A listing page holds up to 1,000 records: only shortened records cost a
// read of their own.
func (r Reader) Day(ctx context.Context, day string, fn func(Record) error) error {
	return r.list(ctx, r.Index.StatusPrefix(day), fn)
}

// File returns the records of one file, looked up in the partitions of the days around when
// it was received (a record's day is its event's, which may fall either side of midnight from
// the object's LastModified).
func (r Reader) File(ctx context.Context, fileID string, around time.Time) ([]Record, error) {
	var out []Record
	for _, d := range []time.Duration{-24 * time.Hour, 0, 24 * time.Hour} {
		err := r.list(ctx, r.Index.StatusPrefix(Day(around.Add(d)))+fileID+"/", func(rec Record) error {
			out = append(out, rec)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TransferFile is an object a transfer id was recorded for.
type TransferFile struct {
	FileID, Day string
}

// Transfer returns the files (object versions) the pipeline saw with transfer id tid: the
// upload, and the objects a rename made of it (a rename keeps the id).
func (r Reader) Transfer(ctx context.Context, tid string) ([]TransferFile, error) {
	prefix := r.Index.transferPrefix(tid)
	var out []TransferFile
	p := s3.NewListObjectsV2Paginator(r.API, &s3.ListObjectsV2Input{Bucket: aws.String(r.Index.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("tracking: list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			id, day, ok := strings.Cut(strings.TrimPrefix(aws.ToString(o.Key), prefix), ",d=")
			if ok {
				out = append(out, TransferFile{FileID: id, Day: day})
			}
		}
	}
	return out, nil
}

func (r Reader) list(ctx context.Context, prefix string, fn func(Record) error) error {
	p := s3.NewListObjectsV2Paginator(r.API, &s3.ListObjectsV2Input{Bucket: aws.String(r.Index.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("tracking: list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			rec, err := r.Index.ParseKey(aws.ToString(o.Key))
			if err != nil {
				continue // not ours (a stray object): skip, as a listing of S3 would
			}
			if rec.cut {
				if rec, err = r.body(ctx, aws.ToString(o.Key), rec); err != nil {
					return err
				}
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// body reads a shortened record's whole content; a record gone since the listing is kept as
// decoded from its key.
func (r Reader) body(ctx context.Context, key string, rec Record) (Record, error) {
	out, err := r.API.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.Index.bucket), Key: aws.String(key)})
	if err != nil {
		if s3status.NoSuchKey(err) {
			return rec, nil
		}
		return rec, fmt.Errorf("tracking: read %s: %w", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, 64<<10))
	if err != nil {
		return rec, fmt.Errorf("tracking: read %s: %w", key, err)
	}
	var whole Record
	if err := json.Unmarshal(data, &whole); err != nil {
		return rec, fmt.Errorf("tracking: record %s: %w", key, err)
	}
	whole.Day, whole.FileID = rec.Day, rec.FileID
	return whole, nil
}
