package transform

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/ferrygw/ferry/pipeline/datasize"
)

// Default bounds of one CSV record, so a file without newlines (a 1 GiB line), with an
// unterminated quote or with millions of delimiters cannot make a transform hold the whole input
// in memory: a record is held whole (its bytes, and an offset per field).
const (
	defaultMaxRecord  = 16 << 20
	defaultMaxColumns = 10000
)

// csvDialect is the shared CSV options of csv-to-jsonl and validate-csv: the format and the
// bounds of a record (max_line_bytes: all the lines of one record; max_columns).
type csvDialect struct {
	delim      byte
	quote      byte // 0: no quoting
	maxRecord  int
	maxColumns int
}

func parseDialect(o *Options) csvDialect {
	d := csvDialect{delim: ',', quote: '"'}
	maxRecord, maxColumns := o.Size("max_line_bytes", defaultMaxRecord), o.Int("max_columns", defaultMaxColumns)
	if maxRecord < 1024 || maxRecord > 1<<30 {
		o.errs = errors.Join(o.errs, fmt.Errorf("option max_line_bytes: want 1KiB to 1GiB, got %d", maxRecord))
		maxRecord = defaultMaxRecord
	}
	if maxColumns < 1 || maxColumns > 1<<20 {
		o.errs = errors.Join(o.errs, fmt.Errorf("option max_columns: want 1 to 1048576, got %d", maxColumns))
		maxColumns = defaultMaxColumns
	}
	d.maxRecord, d.maxColumns = int(maxRecord), int(maxColumns)
	if s := o.String("delimiter", ","); len(s) == 1 && s[0] != '\n' && s[0] != '\r' {
		d.delim = s[0]
	} else if s == `\t` || s == "tab" {
		d.delim = '\t'
	} else {
		o.errs = errors.Join(o.errs, fmt.Errorf("option delimiter: want one ASCII character, got %q", s))
	}
	switch s := o.String("quote", `"`); {
	case s == "":
		d.quote = 0
	case len(s) == 1 && s[0] != '\n' && s[0] != '\r' && s[0] != d.delim:
		d.quote = s[0]
	default:
		o.errs = errors.Join(o.errs, fmt.Errorf("option quote: want one ASCII character other than the delimiter, or \"\" for none, got %q", s))
	}
	return d
}

// csvParser reads RFC 4180 records (with a configurable delimiter and quote) from a stream,
// one record at a time, into reused buffers. Differences from encoding/csv: a configurable
// quote, no allocation per record, line numbers in its errors as Rejections.
type csvParser struct {
	br        *bufio.Reader
	d         csvDialect
	checkUTF8 bool

	line    int64 // physical lines read so far
	recLine int64 // line the current record started on
	started bool  // BOM handled

	long []byte // a line longer than br's buffer
	buf  []byte // the current record's field bytes
	ends []int  // end offset in buf of each field
}

// parserBuffer is what the parser reads ahead of the record it is on.
const parserBuffer = 64 << 10

func newCSVParser(r io.Reader, d csvDialect, checkUTF8 bool) *csvParser {
	return &csvParser{br: bufio.NewReaderSize(r, parserBuffer), d: d, checkUTF8: checkUTF8}
}

func (p *csvParser) fields() int { return len(p.ends) }

func (p *csvParser) field(i int) []byte {
	start := 0
	if i > 0 {
		start = p.ends[i-1]
	}
	return p.buf[start:p.ends[i]]
}

// readLine returns the next line without its "\n" or "\r\n"; the slice is valid until the
// next call. It returns io.EOF when no bytes remain.
func (p *csvParser) readLine() ([]byte, error) {
	line, err := p.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		p.long = append(p.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = p.br.ReadSlice('\n')
			if len(p.long)+len(line) > p.d.maxRecord {
				return nil, reject(p.line+1, "line longer than %s (the route's max_line_bytes)", datasize.Size(p.d.maxRecord))
			}
			p.long = appendDoubling(p.long, line, p.d.maxRecord)
		}
		line = p.long
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	if len(line) == 0 {
		return nil, io.EOF
	}
	p.line++
	if n := len(line); line[n-1] == '\n' {
		line = line[:n-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
	}
	if !p.started {
		p.started = true
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	}
	if p.checkUTF8 && !utf8.Valid(line) {
		return nil, reject(p.line, "invalid UTF-8 (convert the input with the charset transform)")
	}
	return line, nil
}

// next reads one record, skipping empty lines. It returns io.EOF at the end of the input, a
// *Rejection for malformed CSV, or the reader's error.
func (p *csvParser) next() error {
	var line []byte
	for len(line) == 0 {
		var err error
		if line, err = p.readLine(); err != nil {
			return err
		}
	}
	p.recLine = p.line
	d := p.d
	// A line's fields and the newline a quoted field keeps take at most len(line)+1 bytes of
	// buf: reserved here and for each further line of the record, so the appends below never
	// grow it in append's small steps.
	p.buf, p.ends = reserve(p.buf[:0], len(line)+1, d.maxRecord), p.ends[:0]
	pos := 0
	for {
		if d.quote != 0 && pos < len(line) && line[pos] == d.quote {
			pos++
			for {
				i := bytes.IndexByte(line[pos:], d.quote)
				if i < 0 { // the quoted field goes on to the next line
					p.buf = append(p.buf, line[pos:]...)
					p.buf = append(p.buf, '\n')
					if len(p.buf) > d.maxRecord {
						return reject(p.recLine, "record longer than %s (unterminated quoted field? the route's max_line_bytes)", datasize.Size(d.maxRecord))
					}
					var err error
					if line, err = p.readLine(); err == io.EOF {
						return reject(p.recLine, "unterminated quoted field %d", len(p.ends)+1)
					} else if err != nil {
						return err
					}
					p.buf = reserve(p.buf, len(line)+1, d.maxRecord)
					pos = 0
					continue
				}
				p.buf = append(p.buf, line[pos:pos+i]...)
				pos += i + 1
				if pos < len(line) && line[pos] == d.quote { // doubled quote
					p.buf = append(p.buf, d.quote)
					pos++
					continue
				}
				break
			}
			p.ends = append(p.ends, len(p.buf))
			if len(p.ends) > d.maxColumns {
				return p.tooManyColumns()
			}
			switch {
			case pos == len(line):
				return nil
			case line[pos] == d.delim:
				pos++
				continue
			default:
				return reject(p.line, "unexpected %q after the closing quote of field %d", line[pos], len(p.ends))
			}
		}
		f := line[pos:]
		i := bytes.IndexByte(f, d.delim)
		if i >= 0 {
			f = f[:i]
		}
		if d.quote != 0 && bytes.IndexByte(f, d.quote) >= 0 {
			return reject(p.line, "quote %q inside unquoted field %d", d.quote, len(p.ends)+1)
		}
		p.buf = append(p.buf, f...)
		p.ends = append(p.ends, len(p.buf))
		if len(p.buf) > d.maxRecord {
			return reject(p.recLine, "record longer than %s (the route's max_line_bytes)", datasize.Size(d.maxRecord))
		}
		if len(p.ends) > d.maxColumns {
			return p.tooManyColumns()
		}
		if i < 0 {
			return nil
		}
		pos += i + 1
	}
}

// reserve makes room in b for n more bytes, doubling b's capacity when it is full, but not past
// limit unless n needs it. append grows a large slice by only 1.25x, so reaching a 16 MiB line
// left about 64 MiB of earlier copies for the collector; doubling leaves 16.
func reserve(b []byte, n, limit int) []byte {
	if need := len(b) + n; need > cap(b) {
		grown := make([]byte, len(b), max(min(2*cap(b), limit), need))
		copy(grown, b)
		return grown
	}
	return b
}

// appendDoubling appends b to dst, growing dst as reserve does.
func appendDoubling(dst, b []byte, limit int) []byte {
	return append(reserve(dst, len(b), limit), b...)
}

func (p *csvParser) tooManyColumns() error {
	return reject(p.recLine, "more than %d columns (the route's max_columns)", p.d.maxColumns)
}
