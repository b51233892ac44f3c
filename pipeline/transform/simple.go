package transform

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/ianaindex"

	"github.com/ferrygw/ferry/pipeline/datasize"
)

// copyT passes its input through unchanged. No options.
type copyT struct{}

func newCopy(*Options) (Transform, error) { return copyT{}, nil }

func (copyT) Apply(ctx context.Context, in File, emit func(File) error) error {
	return emitOne(ctx, in.Name, in.Body, emit)
}

// gunzip decompresses a gzip stream (concatenated members too). The output's name drops
// ".gz" (".tgz" becomes ".tar"). A corrupt or truncated stream is a Rejection, and so is a gzip
// bomb: more than max_bytes of output (default 8GiB), or, past the first MiB, more than
// max_ratio times the compressed bytes consumed so far (default DefaultMaxRatio).
// Both are enforced while streaming, so the output stops at the limit: memory stays constant and
// the consumer must not commit an output whose Read failed (see Transform).
//
// Options: max_bytes (a size: "8GiB" or a number of bytes), max_ratio.
type gunzip struct{ maxBytes, maxRatio int64 }

func newGunzip(o *Options) (Transform, error) {
	g := gunzip{maxBytes: o.Size("max_bytes", 8<<30), maxRatio: o.Int("max_ratio", DefaultMaxRatio)}
	if g.maxBytes <= 0 || g.maxRatio <= 0 {
		return nil, errors.New("options max_bytes and max_ratio: must be positive")
	}
	return g, nil
}

// DefaultMaxRatio is gunzip's and unzip's default max_ratio. Deflate cannot expand more than
// 1032:1, so a bomb's ratio sits just under that: a limit must be well below it to catch one.
// Real data compresses 5-50x (CSV, logs), highly repetitive exports a few hundred times.
const DefaultMaxRatio = 500

func (g gunzip) Apply(ctx context.Context, in File, emit func(File) error) error {
	// Counted between the buffer and the decompressor: what it consumed, not what was read
	// ahead, so the ratio is exact.
	counted := &countingReader{r: bufio.NewReaderSize(in.Body, 32<<10)}
	zr, err := gzip.NewReader(counted)
	if err != nil {
		return gzipErr(err)
	}
	defer zr.Close()
	name := in.Name
	switch {
	case strings.HasSuffix(name, ".gz"):
		name = strings.TrimSuffix(name, ".gz")
	case strings.HasSuffix(name, ".tgz"):
		name = strings.TrimSuffix(name, ".tgz") + ".tar"
	}
	return emitOne(ctx, name, &bombGuard{r: gzipReader{zr}, in: counted, maxBytes: g.maxBytes, maxRatio: g.maxRatio}, emit)
}

// countingReader counts the bytes read through it, byte by byte too: it is a flate.Reader, so
// the decompressor reads from it directly instead of wrapping it in a buffer of its own.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// bombGuard stops a decompressed stream at maxBytes, or as soon as (past the first MiB) it
// outgrows maxRatio times the compressed bytes read so far.
type bombGuard struct {
	r                  io.Reader
	in                 *countingReader
	out                int64
	maxBytes, maxRatio int64
}

const ratioFloor = 1 << 20 // below this much output no ratio is a bomb

func (b *bombGuard) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.out += int64(n)
	switch {
	case b.out > b.maxBytes:
		return 0, reject(0, "gzip: expands to more than %s (the route's max_bytes)", datasize.Size(b.maxBytes))
	case b.out > ratioFloor && b.out > b.maxRatio*max(b.in.n, 1):
		return 0, reject(0, "gzip: %d compressed bytes expand to more than %d, over %dx (a gzip bomb? the route's max_ratio)",
			b.in.n, b.out, b.maxRatio)
	}
	return n, err
}

type gzipReader struct{ r *gzip.Reader }

func (g gzipReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF {
		err = gzipErr(err)
	}
	return n, err
}

// gzipErr turns the ways a gzip stream can be bad into Rejections; other errors (the input's
// own read errors) stay as they are.
func gzipErr(err error) error {
	var corrupt flate.CorruptInputError
	switch {
	case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
		return reject(0, "gzip: truncated or empty stream")
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum), errors.As(err, &corrupt):
		return reject(0, "gzip: %v", err)
	}
	return err
}

// charset converts text in a single-byte code page to UTF-8. Option from: any code page of
// golang.org/x/text/encoding/charmap by its IANA name or alias ("windows-1252", the default;
// "latin1", "iso-8859-15", "ibm437", "koi8-r"…), or "cpNNN" for windows-NNN or IBM NNN. A byte the
// code page leaves unassigned maps to the control character of the same value, as WHATWG's
// decoder does for windows-1252, so nothing is lost.
type charset struct{ table *[256]string }

func newCharset(o *Options) (Transform, error) {
	from := o.String("from", "windows-1252")
	cm, err := codePage(from)
	if err != nil {
		return nil, fmt.Errorf("option from: %w", err)
	}
	var t [256]string
	for b := range 256 {
		r := cm.DecodeByte(byte(b))
		if r == utf8.RuneError {
			r = rune(b)
		}
		t[b] = string(r)
	}
	return charset{table: &t}, nil
}

// codePage finds a single-byte code page by name.
func codePage(name string) (*charmap.Charmap, error) {
	names := []string{name}
	if n, ok := strings.CutPrefix(strings.ToLower(name), "cp"); ok {
		names = append(names, "windows-"+n, "ibm"+n)
	}
	for _, n := range names {
		if enc, err := ianaindex.IANA.Encoding(n); err == nil {
			if cm, ok := enc.(*charmap.Charmap); ok {
				return cm, nil
			}
			return nil, fmt.Errorf("unsupported charset %q: not a single-byte code page", name)
		}
	}
	return nil, fmt.Errorf("unsupported charset %q (a single-byte code page: windows-1252, latin1, iso-8859-15, ibm437…)", name)
}

func (c charset) Apply(ctx context.Context, in File, emit func(File) error) error {
	return emitOne(ctx, in.Name, &charsetReader{src: in.Body, table: c.table, in: make([]byte, 16<<10)}, emit)
}

type charsetReader struct {
	src   io.Reader
	table *[256]string
	in    []byte
	out   []byte
	off   int
	err   error
}

func (r *charsetReader) Read(p []byte) (int, error) {
	for r.off == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		var n int
		n, r.err = r.src.Read(r.in)
		r.out, r.off = r.out[:0], 0
		for _, b := range r.in[:n] {
			if b < utf8.RuneSelf {
				r.out = append(r.out, b)
			} else {
				r.out = append(r.out, r.table[b]...)
			}
		}
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

// newlines turns CRLF line endings into LF; a CR not followed by LF is kept. No options.
type newlines struct{}

func newNewlines(*Options) (Transform, error) { return newlines{}, nil }

func (newlines) Apply(ctx context.Context, in File, emit func(File) error) error {
	return emitOne(ctx, in.Name, &crlfReader{src: in.Body}, emit)
}

type crlfReader struct {
	src    io.Reader
	buf    []byte
	out    []byte // converted bytes not yet read, in buf
	pendCR bool   // the last chunk ended in CR: kept back until the next byte is known
	err    error
}

func (r *crlfReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			if r.pendCR {
				r.pendCR = false
				r.out = append(r.buf[:0], '\r')
				break
			}
			return 0, r.err
		}
		if r.buf == nil {
			r.buf = make([]byte, 32<<10)
		}
		start := 0
		if r.pendCR {
			r.buf[0], start = '\r', 1
		}
		n, err := r.src.Read(r.buf[start:])
		r.err, r.pendCR = err, false
		b := r.buf[:start+n]
		if bytes.IndexByte(b, '\r') < 0 {
			r.out = b
			continue
		}
		w := 0 // squeeze CRLF -> LF in place
		for i := 0; i < len(b); i++ {
			if b[i] == '\r' {
				if i+1 < len(b) && b[i+1] == '\n' {
					continue
				}
				if i+1 == len(b) && r.err == nil {
					r.pendCR = true
					continue
				}
			}
			b[w] = b[i]
			w++
		}
		r.out = b[:w]
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}
