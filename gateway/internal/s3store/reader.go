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

// reader serves reads at any offset from one ranged GET kept open at the current position.
// Bytes it has passed stay in a ring of the last ReadBuffer bytes, so a read slightly behind is
// served from memory and one slightly ahead skips forward on the same body: SFTP servers hand
// reads to several workers and their offsets arrive a little out of order. Anything further
// away opens a new GET at that offset. Every GET is pinned to the ETag seen at Open, so a file
// replaced mid-read fails instead of mixing two versions.
type reader struct {
	h    *homeFS
	ctx  context.Context
	name string
	key  string
	etag string
	size int64

	mu     sync.Mutex
	body   io.ReadCloser
	pos    int64  // offset of the next byte body yields
	ring   []byte // the byte at offset x (pos-filled <= x < pos) is ring[x%len(ring)]
	filled int
	off    int64 // for Read and Seek
	closed bool
	gets   int // GETs made, for tests
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
	r.ring = nil
	r.dropBody()
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
		if r.body != nil && cur < r.pos && cur >= r.pos-int64(r.filled) {
			n += r.fromRing(want[n:], cur)
			continue
		}
		if r.body == nil || cur < r.pos || cur-r.pos > int64(len(r.ring)) {
			if err := r.open(cur); err != nil {
				return n, err
			}
		}
		var err error
		if cur > r.pos {
			err = r.skip(cur - r.pos)
		} else {
			var m int
			m, err = r.body.Read(want[n:])
			r.remember(want[n : n+m])
			n += m
		}
		if err == nil || (err == io.EOF && r.pos == r.size) {
			continue
		}
		// The body ended early or broke: start a new GET where we are, a few times.
		r.dropBody()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if reopens++; reopens > maxReopen || r.ctx.Err() != nil {
			return n, &fs.PathError{Op: "read", Path: r.name, Err: err}
		}
		r.h.s.log.DebugContext(r.ctx, "read failed, reopening", "path", r.name, "offset", r.pos, "err", err)
	}
	if len(want) < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// open starts a GET from off to the end.
func (r *reader) open(off int64) error {
	r.dropBody()
	if r.ring == nil {
		r.ring = make([]byte, min(int64(r.h.s.cfg.ReadBuffer), r.size))
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
	r.body, r.pos, r.filled = out.Body, off, 0
	return nil
}

// skip reads and remembers n bytes from the body.
func (r *reader) skip(n int64) error {
	for n > 0 {
		// Read straight into the ring's free space at pos.
		i := int(r.pos % int64(len(r.ring)))
		chunk := r.ring[i:min(len(r.ring), i+int(min(n, int64(len(r.ring)))))]
		m, err := r.body.Read(chunk)
		r.pos += int64(m)
		r.filled = min(len(r.ring), r.filled+m)
		n -= int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}

// remember records bytes just read from the body in the ring and advances pos.
func (r *reader) remember(b []byte) {
	r.pos += int64(len(b))
	size := len(r.ring)
	if size == 0 || len(b) == 0 {
		return
	}
	r.filled = min(size, r.filled+len(b))
	if len(b) > size {
		b = b[len(b)-size:]
	}
	at := r.pos - int64(len(b))
	for len(b) > 0 {
		c := copy(r.ring[int(at%int64(size)):], b)
		b, at = b[c:], at+int64(c)
	}
}

// fromRing copies bytes from offset cur (inside the ring) into p.
func (r *reader) fromRing(p []byte, cur int64) int {
	n := 0
	for n < len(p) && cur < r.pos {
		i := int(cur % int64(len(r.ring)))
		end := min(len(r.ring), i+int(r.pos-cur))
		c := copy(p[n:], r.ring[i:end])
		n += c
		cur += int64(c)
	}
	return n
}

func (r *reader) dropBody() {
	if r.body != nil {
		_ = r.body.Close()
		r.body = nil
	}
	r.filled = 0
}
