package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/transfermem"
)

// errChanged says the object was replaced while it was being read.
var errChanged = errors.New("file changed while being read")

// maxReopen bounds new GETs after a body fails mid-read, per ReadAt.
const maxReopen = 3

// Open opens a file for reading.
func (h *homeFS) Open(ctx context.Context, name string) (storage.Reader, error) {
	t, err := h.resolve("open", name)
	if err != nil {
		return nil, err
	}
	e, out, err := h.lookup(ctx, t)
	if err != nil {
		return nil, pathErr("open", t.name, err)
	}
	if e.Dir {
		return nil, pathErr("open", t.name, storage.ErrIsDir)
	}
	return &reader{h: h, ctx: ctx, name: t.name, key: t.key, etag: aws.ToString(out.ETag), size: e.Size}, nil
}

// reader serves reads at any offset from ranged GETs kept open ("streams"). Bytes a stream
// has passed stay in its ring of the last ReadBuffer bytes, so a read slightly behind is served
// from memory and one slightly ahead skips forward on the same body: SFTP servers hand reads to
// several workers and their offsets arrive out of order. A read further ahead moves the main
// stream there. A read further behind (a straggler, or a client going back) uses a second
// stream, so the main one keeps its place. Every GET is pinned to the ETag seen at Open, so a
// file replaced mid-read fails instead of mixing two versions.
type reader struct {
	h    *homeFS
	ctx  context.Context
	name string
	key  string
	etag string
	size int64

	mu         sync.Mutex
	main, back stream
	lease      *transfermem.Lease // the rings' memory
	off        int64              // for Read and Seek
	closed     bool
	gets       int // GETs made, for tests
}

// stream is one open GET and the bytes it yielded last.
type stream struct {
	body   io.ReadCloser
	pos    int64  // offset of the next byte body yields
	ring   []byte // the byte at offset x (pos-filled <= x < pos) is ring[x%len(ring)]
	filled int
}

func (s *stream) holds(off int64) bool { return off < s.pos && off >= s.pos-int64(s.filled) }

// reaches reports whether off is at most a ring's length ahead of the open body.
func (s *stream) reaches(off int64) bool {
	return s.body != nil && off >= s.pos && off-s.pos <= int64(len(s.ring))
}

func (r *reader) Size() int64 { return r.size }

func (r *reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, err := r.readAt(p, r.off)
	r.off += int64(n)
	return n, err
}

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readAt(p, off)
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, &fs.PathError{Op: "seek", Path: r.name, Err: fs.ErrInvalid}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: r.name, Err: fs.ErrInvalid}
	}
	r.off = offset
	return offset, nil
}

func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.main.drop()
	r.back.drop()
	if r.lease != nil {
		r.lease.Free(r.main.ring)
		r.lease.Free(r.back.ring)
		r.lease.Release()
		r.lease = nil
	}
	r.main.ring, r.back.ring = nil, nil
	return nil
}

func (r *reader) readAt(p []byte, off int64) (int, error) {
	if r.closed {
		return 0, &fs.PathError{Op: "read", Path: r.name, Err: fs.ErrClosed}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: r.name, Err: fs.ErrInvalid}
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := p
	if int64(len(p)) > r.size-off {
		want = p[:r.size-off]
	}
	n, reopens := 0, 0
	for n < len(want) {
		cur := off + int64(n)
		if s := r.holding(cur); s != nil {
			n += s.fromRing(want[n:], cur)
			continue
		}
		s := r.reaching(cur)
		if s == nil {
			s = &r.main
			if r.main.body != nil && cur < r.main.pos {
				s = &r.back
			}
			if err := r.open(s, cur); err != nil {
				return n, err
			}
		}
		var err error
		if cur > s.pos {
			err = s.skip(cur - s.pos)
		} else {
			// Read ahead into the ring, then serve from it: the same one copy as reading into
			// p and remembering it, in fewer and larger reads through the SDK's checksum
			// reader and the socket than the client's 32 KiB requests.
			err = s.fill(readAhead)
		}
		if err == nil || (err == io.EOF && s.pos == r.size) {
			continue
		}
		// The body ended early or broke: start a new GET where we are, a few times.
		s.drop()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if reopens++; reopens > maxReopen || r.ctx.Err() != nil {
			return n, &fs.PathError{Op: "read", Path: r.name, Err: err}
		}
		r.h.s.log.DebugContext(r.ctx, "read failed, reopening", "path", r.name, "offset", s.pos, "err", err)
	}
	if len(want) < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *reader) holding(off int64) *stream {
	for _, s := range []*stream{&r.main, &r.back} {
		if s.holds(off) {
			return s
		}
	}
	return nil
}

// reaching returns the stream that gets to off by skipping the fewest bytes, or nil.
func (r *reader) reaching(off int64) *stream {
	var best *stream
	for _, s := range []*stream{&r.main, &r.back} {
		if s.reaches(off) && (best == nil || s.pos > best.pos) {
			best = s
		}
	}
	return best
}

// open starts s's GET from off to the end.
func (r *reader) open(s *stream, off int64) error {
	s.drop()
	if s.ring == nil {
		// The ring is transfer memory: wait for it like an upload waits for a part.
		n := min(int64(r.h.s.cfg.ReadBuffer), r.size)
		var err error
		if r.lease == nil {
			r.lease, err = r.h.s.memory(r.h.user).Reserve(r.ctx, n)
		} else {
			err = r.lease.Grow(r.ctx, n)
		}
		if err != nil {
			if errors.Is(err, transfermem.ErrExhausted) {
				err = fmt.Errorf("%w: %w", storage.ErrBusy, err)
			}
			return pathErr("read", r.name, err)
		}
		s.ring = r.lease.Alloc(int(n))
	}
	r.gets++
	out, err := r.h.s.api.GetObject(r.ctx, &s3.GetObjectInput{
		Bucket: &r.h.bucket, Key: &r.key,
		Range:   aws.String(fmt.Sprintf("bytes=%d-", off)),
		IfMatch: aws.String(r.etag),
	})
	if err != nil {
		if errors.Is(classify(err), fs.ErrExist) { // 412: the ETag no longer matches
			err = &sdkError{kind: errChanged, cause: err}
		}
		return pathErr("read", r.name, err)
	}
	s.body, s.pos = out.Body, off
	return nil
}

// readAhead is the most one read from a body takes into the ring.
const readAhead = 256 << 10

// fill reads once from the body into the ring's space at pos, at most n bytes.
func (s *stream) fill(n int) error {
	i := int(s.pos % int64(len(s.ring)))
	m, err := s.body.Read(s.ring[i:min(len(s.ring), i+n)])
	s.pos += int64(m)
	s.filled = min(len(s.ring), s.filled+m)
	return err
}

// skip reads and remembers n bytes from the body.
func (s *stream) skip(n int64) error {
	for n > 0 {
		// Read straight into the ring's free space at pos.
		i := int(s.pos % int64(len(s.ring)))
		chunk := s.ring[i:min(len(s.ring), i+int(min(n, int64(len(s.ring)))))]
		m, err := s.body.Read(chunk)
		s.pos += int64(m)
		s.filled = min(len(s.ring), s.filled+m)
		n -= int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}

// fromRing copies bytes from offset cur (inside the ring) into p.
func (s *stream) fromRing(p []byte, cur int64) int {
	n := 0
	for n < len(p) && cur < s.pos {
		i := int(cur % int64(len(s.ring)))
		end := min(len(s.ring), i+int(s.pos-cur))
		c := copy(p[n:], s.ring[i:end])
		n += c
		cur += int64(c)
	}
	return n
}

func (s *stream) drop() {
	if s.body != nil {
		_ = s.body.Close()
		s.body = nil
	}
	s.filled = 0
}
