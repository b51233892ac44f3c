package s3server

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/johannesboyne/gofakes3"

	"github.com/ferrygw/ferry/gateway/internal/embedded/s3disk"
)

// Request bodies as SDKs send them. gofakes3 v1.2.0 only strips the framing of
// STREAMING-AWS4-HMAC-SHA256-PAYLOAD without checking it, stores the framing of the trailer
// variants as object data, and ignores x-amz-content-sha256 and x-amz-checksum-*. prepareBody
// hands gofakes3 the plain bytes instead (as UNSIGNED-PAYLOAD, with the decoded length), and
// checks chunk signatures, the payload hash and checksums while they stream: a mismatch fails
// the read at the end of the body, so the backend discards what it wrote.

const (
	codeSHA256Mismatch    gofakes3.ErrorCode = "XAmzContentSHA256Mismatch"
	codeSignatureMismatch gofakes3.ErrorCode = "SignatureDoesNotMatch"

	maxChunkLine = 4 << 10
	emptySHA256  = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

var crc64NVME = crc64.MakeTable(0x9a6c9329ac4bc9b5)

func newChecksum(alg string) hash.Hash {
	switch alg {
	case "crc32":
		return crc32.NewIEEE()
	case "crc32c":
		return crc32.New(crc32.MakeTable(crc32.Castagnoli))
	case "crc64nvme":
		return crc64.New(crc64NVME)
	case "sha1":
		return sha1.New()
	case "sha256":
		return sha256.New()
	}
	return nil
}

var checksumAlgs = []string{"crc32", "crc32c", "crc64nvme", "sha1", "sha256"}

func prepareBody(r *http.Request, a *auth) *apiError {
	v := &verifyingBody{src: r.Body, closer: r.Body, decodedLen: -1}
	ph := a.payloadHash
	switch {
	case ph == unsignedPayload:
	case ph == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" || ph == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" ||
		ph == "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
		n, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
		if err != nil || n < 0 {
			return &apiError{status: http.StatusLengthRequired, code: "MissingContentLength", msg: "x-amz-decoded-content-length is required with " + ph}
		}
		cr := &chunkReader{
			br: bufio.NewReaderSize(r.Body, 64<<10), a: a, prevSig: a.seed,
			signed: strings.HasPrefix(ph, "STREAMING-AWS4"), trailer: strings.HasSuffix(ph, "-TRAILER"),
			h: sha256.New(),
		}
		v.src, v.chunks, v.decodedLen = cr, cr, n
		r.ContentLength = n
		r.Header.Set("Content-Length", strconv.FormatInt(n, 10))
		r.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
		r.Header.Del("X-Amz-Decoded-Content-Length")
		var enc []string
		for _, e := range strings.Split(r.Header.Get("Content-Encoding"), ",") {
			if e = strings.TrimSpace(e); e != "" && !strings.EqualFold(e, "aws-chunked") {
				enc = append(enc, e)
			}
		}
		if len(enc) == 0 {
			r.Header.Del("Content-Encoding")
		} else {
			r.Header.Set("Content-Encoding", strings.Join(enc, ","))
		}
	case len(ph) == 64 && isHex(ph):
		v.sha, v.wantSHA = sha256.New(), strings.ToLower(ph)
	default:
		return &apiError{status: http.StatusNotImplemented, code: "NotImplemented", msg: "x-amz-content-sha256 " + ph + " is not supported"}
	}
	for _, alg := range checksumAlgs {
		if want := r.Header.Get("X-Amz-Checksum-" + alg); want != "" {
			v.sum, v.sumAlg, v.wantSum = newChecksum(alg), alg, want
		}
	}
	if t := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Amz-Trailer"))); t != "" && v.chunks != nil {
		if alg, ok := strings.CutPrefix(t, "x-amz-checksum-"); ok && newChecksum(alg) != nil {
			v.sum, v.sumAlg, v.trailerName = newChecksum(alg), alg, t
		}
	}
	if v.chunks == nil && v.sha == nil && v.sum == nil {
		return nil
	}
	r.Body = v
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// verifyingBody checks the decoded length, payload hash and checksum when src ends.
type verifyingBody struct {
	src    io.Reader
	closer io.Closer
	chunks *chunkReader // trailers, when the body was aws-chunked

	n           int64
	decodedLen  int64 // -1: not known
	sha         hash.Hash
	wantSHA     string
	sum         hash.Hash
	sumAlg      string
	wantSum     string // from the header, or
	trailerName string // the trailer carrying it
	err         error
}

func (v *verifyingBody) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.src.Read(p)
	v.n += int64(n)
	if v.sha != nil {
		v.sha.Write(p[:n])
	}
	if v.sum != nil {
		v.sum.Write(p[:n])
	}
	if v.decodedLen >= 0 && v.n > v.decodedLen {
		err = gofakes3.ErrorMessage(gofakes3.ErrIncompleteBody, "the body is longer than x-amz-decoded-content-length")
	}
	if err == io.EOF {
		err = v.finish()
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

func (v *verifyingBody) finish() error {
	if v.decodedLen >= 0 && v.n != v.decodedLen {
		return gofakes3.ErrIncompleteBody
	}
	if v.sha != nil && hex.EncodeToString(v.sha.Sum(nil)) != v.wantSHA {
		return gofakes3.ErrorMessage(codeSHA256Mismatch, "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	if v.sum != nil {
		want := v.wantSum
		if v.trailerName != "" {
			want = v.chunks.trailers[v.trailerName]
		}
		if got := base64.StdEncoding.EncodeToString(v.sum.Sum(nil)); want != got {
			return gofakes3.ErrorMessagef(gofakes3.ErrBadDigest, "The %s you specified did not match the calculated checksum.", v.sumAlg)
		}
	}
	return io.EOF
}

func (v *verifyingBody) Close() error { return v.closer.Close() }

// chunkReader decodes aws-chunked framing: "<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n"
// up to a zero-size chunk, then trailer lines ("name:value") up to an empty line. Signed chunks
// chain from the request signature; each is checked when it ends. The trailer's own signature
// (x-amz-trailer-signature) is not checked: the chunk signatures already cover every data byte,
// and the checksum it carries is checked against the data.
type chunkReader struct {
	br       *bufio.Reader
	a        *auth
	signed   bool
	trailer  bool
	prevSig  string
	sig      string // current chunk's
	left     int64
	h        hash.Hash
	done     bool
	trailers map[string]string
	err      error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			c.err = err
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	c.h.Write(p[:n])
	if c.left == 0 {
		if err2 := c.endChunk(); err2 != nil {
			c.err = err2
			return n, err2
		}
	}
	if err == io.EOF {
		if c.left > 0 {
			err = io.ErrUnexpectedEOF
		} else {
			err = nil
		}
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *chunkReader) line() (string, error) {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > maxChunkLine {
		return "", malformedChunk("chunk header too long")
	}
	if err != nil {
		if err == io.EOF && len(line) == 0 {
			return "", io.EOF
		}
		return "", io.ErrUnexpectedEOF
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// next reads a chunk header; at the last chunk it reads the trailers.
func (c *chunkReader) next() error {
	hdr, err := c.line()
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	} else if err != nil {
		return err
	}
	sizeStr, ext, _ := strings.Cut(hdr, ";")
	size, err := strconv.ParseInt(strings.TrimSpace(sizeStr), 16, 64)
	if err != nil || size < 0 {
		return malformedChunk("bad chunk size")
	}
	c.sig = ""
	if sig, ok := strings.CutPrefix(strings.TrimSpace(ext), "chunk-signature="); ok {
		c.sig = sig
	}
	if c.signed && c.sig == "" {
		return gofakes3.ErrorMessage(codeSignatureMismatch, "chunk signature missing")
	}
	c.h.Reset()
	if size > 0 {
		c.left = size
		return nil
	}
	if c.signed {
		if err := c.checkSig(); err != nil {
			return err
		}
	}
	c.done = true
	if c.trailer {
		return c.readTrailers()
	}
	return nil
}

func (c *chunkReader) endChunk() error {
	if c.signed {
		if err := c.checkSig(); err != nil {
			return err
		}
	}
	crlf, err := c.line()
	if err != nil || crlf != "" {
		return malformedChunk("chunk data not followed by CRLF")
	}
	return nil
}

func (c *chunkReader) checkSig() error {
	sts := c.a.stringToSign("AWS4-HMAC-SHA256-PAYLOAD", c.prevSig+"\n"+emptySHA256+"\n"+hex.EncodeToString(c.h.Sum(nil)))
	want, err := hex.DecodeString(c.sig)
	if err != nil || !bytes.Equal(hmacSHA256(c.a.signingKey, sts), want) {
		return gofakes3.ErrorMessage(codeSignatureMismatch, "The chunk signature does not match.")
	}
	c.prevSig = c.sig
	return nil
}

func (c *chunkReader) readTrailers() error {
	c.trailers = map[string]string{}
	for range 64 {
		l, err := c.line()
		if err == io.EOF || (err == nil && l == "") {
			return nil
		}
		if err != nil {
			return err
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return malformedChunk("malformed trailer")
		}
		c.trailers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	return malformedChunk("too many trailers")
}

func malformedChunk(msg string) error {
	return gofakes3.ErrorMessage(s3disk.CodeInvalidRequest, "malformed aws-chunked body: "+msg)
}
