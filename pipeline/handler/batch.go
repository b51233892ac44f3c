package handler

import (
	"context"
	"encoding/json"
	"log/slog"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/route"
	"github.com/ferrygw/ferry/pipeline/s3status"
)

// completeBatch processes the batch a marker completes and publishes one event listing it.
//
// The batch is the files held in the ledger for the marker's folder plus the route's files the
// folder holds now: S3 does not order events, so a file's event may arrive after its marker's,
// and listing makes the marker see it anyway. Files a previous marker took are left out (their
// fact is done in the ledger), and so is a file's late event afterwards.
func (h *Transform) completeBatch(ctx context.Context, log *slog.Logger, r *route.Route, marker input) error {
	log = log.With("route", r.Name, "marker", marker.Key)
	var held []string
	var members []input
	err := h.once(ctx, log, marker, func() (*event.FileDetail, error) {
		var err error
		members, held, err = h.batchMembers(ctx, log, r, marker)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		var results []event.FileResult
		for _, in := range members {
			res, err := h.process(ctx, log.With("member", in.Key), r, in)
			if err != nil {
				return nil, err
			}
			if res != nil {
				results = append(results, *res)
			}
		}
		if len(results) == 0 {
			log.InfoContext(ctx, "transform: batch marker without files")
			return nil, nil
		}
		h.record(r, results, time.Since(start))
		return h.detail(r, factID(marker), marker, marker.Key, results), nil
	})
	if err != nil {
		return err
	}
	// The batch is done: its files' facts are done (a late event of one is dropped) and they
	// are no longer held (the next marker starts a new batch).
	for _, in := range members {
		if err := h.cfg.Ledger.Done(ctx, ObjectFact(factID(in)), BatchMember{Batch: marker.Key, BatchID: factID(marker)}); err != nil {
			log.WarnContext(ctx, "transform: mark batch member", "key", in.Key, "err", err)
		}
	}
	for _, n := range held {
		if err := h.cfg.Ledger.Release(ctx, n); err != nil {
			log.WarnContext(ctx, "transform: drop held record", "name", n, "err", err)
		}
	}
	return nil
}

// batchMembers returns the files of marker's batch in key order, and the held records to drop
// once it is done.
func (h *Transform) batchMembers(ctx context.Context, log *slog.Logger, r *route.Route, marker input) ([]input, []string, error) {
	byKey := map[string]input{}
	names, vals, err := h.cfg.Ledger.List(ctx, batchDir(r, marker.Key))
	if err != nil {
		return nil, nil, err
	}
	for i, v := range vals {
		var in input
		if err := json.Unmarshal(v, &in); err != nil {
			log.WarnContext(ctx, "transform: bad batch record", "name", names[i], "err", err)
			continue
		}
		byKey[in.Key] = in
	}
	dir := path.Dir(marker.Key) + "/"
	if dir == "./" {
		dir = ""
	}
	p := s3.NewListObjectsV2Paginator(h.cfg.S3, &s3.ListObjectsV2Input{
		Bucket: aws.String(marker.Bucket), Prefix: aws.String(dir), Delimiter: aws.String("/"),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, o := range page.Contents {
			key, etag := aws.ToString(o.Key), strings.Trim(aws.ToString(o.ETag), `"`)
			if prev, ok := byKey[key]; ok && prev.ETag == etag {
				continue
			}
			in := input{Bucket: marker.Bucket, Key: key, ETag: etag, Size: aws.ToInt64(o.Size), Reason: event.ReasonPutObject,
				At: marker.At, Received: aws.ToTime(o.LastModified).UTC()}
			if m, ok := h.cfg.Routes.Match(in.object()); !ok || m != r {
				continue
			}
			head, err := h.cfg.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(in.Bucket), Key: aws.String(key), IfMatch: aws.String(quote(etag))})
			if s3status.Is(err, 404) || s3status.Is(err, 412) {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			in.User, in.TransferID, in.Protocol = head.Metadata[MetaUser], head.Metadata[MetaTransferID], head.Metadata[MetaProtocol]
			if m, ok := h.cfg.Routes.Match(in.object()); !ok || m != r {
				continue
			}
			byKey[key] = in
		}
	}
	var members []input
	for _, in := range byKey {
		done, err := h.cfg.Ledger.Has(ctx, "object/"+factID(in))
		if err != nil {
			return nil, nil, err
		}
		if !done {
			members = append(members, in)
		}
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Key < members[j].Key })
	return members, names, nil
}
