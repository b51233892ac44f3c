package s3store

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/storage"
)

// markState is what a listing knows about its directory's attribute markers.
type markState int

const (
	marksUnknown markState = iota // not yet past ".ferry-attrs/" in key order
	marksAbsent
	marksPresent
)

// listed is one entry of a listing page with what the join needs.
type listed struct {
	e   *storage.Entry
	v   objVersion // files only
	rel string     // key (or prefix) relative to the listed directory
}

// listJoin merges a directory's listing with its attribute markers. The listing itself shows
// whether there are any: a ".ferry-attrs/" common prefix, at its place in key order. Entries
// that sort before that place wait (held) until the listing gets past it — within the first
// page unless all of that page sorts before it, when one probe of the markers settles it — so
// a directory without markers never costs a marker request, and memory stays at one page.
type listJoin struct {
	h      *homeFS
	dirKey string
	fn     func(*storage.Entry) error
	state  markState
	held   []listed
	marks  *markStream
	fnErr  error // what fn returned, if it stopped the listing
}

// hiddenRel is where the markers' prefix sorts among a directory's keys.
const hiddenRel = attrDirName + "/"

// page hands one listing page to fn; more says whether pages follow.
func (j *listJoin) page(ctx context.Context, prefix string, page *s3.ListObjectsV2Output, more bool) error {
	err := forPage(prefix, page, func(l listed) error {
		if l.e.Name == attrDirName { // the markers (or a reserved name no client can address)
			if l.e.Dir {
				return j.settle(ctx, marksPresent)
			}
			return nil
		}
		if j.state == marksUnknown {
			if l.rel < hiddenRel {
				j.held = append(j.held, l)
				return nil
			}
			if err := j.settle(ctx, marksAbsent); err != nil {
				return err
			}
		}
		return j.emit(ctx, l)
	})
	if err != nil || j.state != marksUnknown || !more {
		return err
	}
	// A whole page before ".ferry-attrs/": ask the markers' prefix directly rather than hold
	// more pages.
	j.marks = j.h.newMarkStream(ctx, j.dirKey)
	_, ok, err := j.marks.peek()
	if err != nil {
		return err
	}
	if ok {
		return j.settle(ctx, marksPresent)
	}
	return j.settle(ctx, marksAbsent)
}

// finish settles a listing that ended before reaching ".ferry-attrs/".
func (j *listJoin) finish(ctx context.Context) error {
	if j.state == marksUnknown {
		return j.settle(ctx, marksAbsent)
	}
	return nil
}

// settle records what is known about markers and hands over the held entries.
func (j *listJoin) settle(ctx context.Context, s markState) error {
	j.state = s
	if s == marksPresent && j.marks == nil {
		j.marks = j.h.newMarkStream(ctx, j.dirKey)
	}
	held := j.held
	j.held = nil
	for _, l := range held {
		if err := j.emit(ctx, l); err != nil {
			return err
		}
	}
	return nil
}

func (j *listJoin) emit(ctx context.Context, l listed) error {
	if j.state == marksPresent && !l.e.Dir {
		if err := j.marks.apply(l.e, l.v); err != nil {
			return err
		}
	}
	if err := j.fn(l.e); err != nil {
		j.fnErr = err
		return err
	}
	return nil
}

// wrap names the listing in an S3 error; the callback's own errors are returned as they are.
func (j *listJoin) wrap(name string, err error) error {
	if err == nil || err == j.fnErr {
		return err
	}
	return pathErr("list", name, err)
}

// close stops the markers' read-ahead.
func (j *listJoin) close() {
	if j.marks != nil {
		j.marks.close()
	}
}

// forPage calls fn for each entry of page, files and sub-directories merged in key order.
func forPage(prefix string, page *s3.ListObjectsV2Output, fn func(listed) error) error {
	objs, dirs := page.Contents, page.CommonPrefixes
	for len(objs) > 0 || len(dirs) > 0 {
		var l listed
		if len(dirs) == 0 || (len(objs) > 0 && aws.ToString(objs[0].Key) < aws.ToString(dirs[0].Prefix)) {
			o := objs[0]
			objs = objs[1:]
			l.rel = strings.TrimPrefix(aws.ToString(o.Key), prefix)
			l.v = versionOf(o.ETag, o.LastModified)
			l.e = &storage.Entry{
				Name: l.rel,
				Size: aws.ToInt64(o.Size),
				// A HEAD's Last-Modified has whole seconds; a listing may have more. Both views
				// must show the same time.
				ModTime: aws.ToTime(o.LastModified).Truncate(time.Second),
			}
		} else {
			d := dirs[0]
			dirs = dirs[1:]
			l.rel = strings.TrimPrefix(aws.ToString(d.Prefix), prefix)
			l.e = &storage.Entry{Name: strings.TrimSuffix(l.rel, "/"), Dir: true}
		}
		// The directory's own marker, and names no client can address ("a//b" keys).
		if l.e.Name == "" || l.e.Name == "." || l.e.Name == ".." {
			continue
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

// markStream reads a directory's markers in key order alongside its listing, one page ahead in
// a goroutine so the two streams' requests overlap.
type markStream struct {
	dir    string // markDir of the listed directory
	pages  chan markPage
	cancel context.CancelFunc
	wg     sync.WaitGroup

	cur  []string // keys of the current page not yet consumed, relative to dir
	err  error
	done bool
}

type markPage struct {
	keys []string
	err  error
}

func (h *homeFS) newMarkStream(ctx context.Context, dirKey string) *markStream {
	dir := markDir(dirKey)
	ctx, cancel := context.WithCancel(ctx)
	s := &markStream{dir: dir, pages: make(chan markPage, 1), cancel: cancel}
	pages := s3.NewListObjectsV2Paginator(h.s.api, &s3.ListObjectsV2Input{
		Bucket: &h.bucket, Prefix: &dir, MaxKeys: aws.Int32(h.s.cfg.ListPageSize),
	})
	s.wg.Go(func() {
		defer close(s.pages)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			var p markPage
			if err != nil {
				p.err = err
			} else {
				p.keys = make([]string, len(page.Contents))
				for i, o := range page.Contents {
					p.keys[i] = strings.TrimPrefix(aws.ToString(o.Key), dir)
				}
			}
			select {
			case s.pages <- p:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	return s
}

// peek returns the next marker key relative to dir, waiting for its page when needed.
func (s *markStream) peek() (string, bool, error) {
	for len(s.cur) == 0 && !s.done && s.err == nil {
		p, ok := <-s.pages
		switch {
		case !ok:
			s.done = true
		case p.err != nil:
			s.err = p.err
		default:
			s.cur = p.keys
		}
	}
	if s.err != nil {
		return "", false, s.err
	}
	if len(s.cur) == 0 {
		return "", false, nil
	}
	return s.cur[0], true, nil
}

// apply gives file entry e (of version v) the attributes its markers record. Entries must come
// in name order, as listings give them; markers of names in between (files deleted behind
// Ferry's back) are passed over.
func (s *markStream) apply(e *storage.Entry, v objVersion) error {
	want := hexName(e.Name) + "."
	var marks []attrMark
	for {
		rel, ok, err := s.peek()
		if err != nil {
			return err
		}
		mine := strings.HasPrefix(rel, want)
		if !ok || (!mine && rel > want) {
			break
		}
		if _, m, ok := parseMark(rel); ok && mine {
			m.key = s.dir + rel
			marks = append(marks, m)
		}
		s.cur = s.cur[1:]
	}
	if m, found := best(marks, v); found {
		m.apply(e)
	}
	return nil
}

func (s *markStream) close() {
	s.cancel()
	s.wg.Wait()
}
