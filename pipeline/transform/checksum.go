package transform

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// Checksum is the digest a file is expected to have, usually read by the caller from a sidecar
// ("data.csv.sha256") and handed to verify-checksum through WithChecksum.
type Checksum struct {
	Algorithm string // "sha256" or "md5"
	Hex       string
}

type checksumKey struct{}

// WithChecksum returns a context carrying the expected digest of the file about to be chained.
func WithChecksum(ctx context.Context, c Checksum) context.Context {
	return context.WithValue(ctx, checksumKey{}, c)
}

// ChecksumFrom returns the expected digest put in ctx by WithChecksum.
func ChecksumFrom(ctx context.Context) (Checksum, bool) {
	c, ok := ctx.Value(checksumKey{}).(Checksum)
	return c, ok
}

// ParseSidecar reads a sidecar in sha256sum/md5sum format ("<hex>  <name>", or just "<hex>")
// and returns the first digest. algorithm is "sha256" or "md5", as the sidecar's extension says.
func ParseSidecar(r io.Reader, algorithm string) (Checksum, error) {
	want, err := digestLen(algorithm)
	if err != nil {
		return Checksum{}, err
	}
	sc := bufio.NewScanner(io.LimitReader(r, 64<<10))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		h := strings.ToLower(f[0])
		if _, err := hex.DecodeString(h); err != nil || len(h) != want*2 {
			return Checksum{}, reject(0, "sidecar: %q is not a %s digest", f[0], algorithm)
		}
		return Checksum{Algorithm: algorithm, Hex: h}, nil
	}
	if err := sc.Err(); err != nil {
		return Checksum{}, fmt.Errorf("sidecar: %w", err)
	}
	return Checksum{}, reject(0, "sidecar: empty")
}

func digestLen(algorithm string) (int, error) {
	switch algorithm {
	case "sha256":
		return sha256.Size, nil
	case "md5":
		return md5.Size, nil
	}
	return 0, fmt.Errorf("unsupported checksum algorithm %q (want sha256 or md5)", algorithm)
}

// verifyChecksum passes its input through unchanged and, at its end, compares its digest with
// the expected one: the expected option (hex) when given, else the Checksum in the chain's
// context. A mismatch, or no expected digest at all, is a Rejection returned by the output's
// final Read, so the consumer must not commit an output whose Read failed.
//
// Options: algorithm ("sha256", the default, or "md5"), expected (hex digest).
type verifyChecksum struct {
	algorithm string
	expected  string
}

func newVerifyChecksum(o *Options) (Transform, error) {
	t := verifyChecksum{algorithm: o.String("algorithm", "sha256"), expected: strings.ToLower(o.String("expected", ""))}
	n, err := digestLen(t.algorithm)
	if err != nil {
		return nil, fmt.Errorf("option algorithm: %w", err)
	}
	if t.expected != "" {
		if _, err := hex.DecodeString(t.expected); err != nil || len(t.expected) != 2*n {
			return nil, fmt.Errorf("option expected: not a %s hex digest", t.algorithm)
		}
	}
	return t, nil
}

func (t verifyChecksum) Apply(ctx context.Context, in File, emit func(File) error) error {
	want := t.expected
	if want == "" {
		c, ok := ChecksumFrom(ctx)
		if !ok {
			return reject(0, "checksum: no expected %s digest (missing sidecar?)", t.algorithm)
		}
		if c.Algorithm != t.algorithm {
			return reject(0, "checksum: the sidecar has a %s digest, the route wants %s", c.Algorithm, t.algorithm)
		}
		want = strings.ToLower(c.Hex)
	}
	var h hash.Hash = sha256.New()
	if t.algorithm == "md5" {
		h = md5.New()
	}
	return emitOne(ctx, in.Name, &hashReader{src: in.Body, h: h, algorithm: t.algorithm, want: want}, emit)
}

type hashReader struct {
	src       io.Reader
	h         hash.Hash
	algorithm string
	want      string
}

func (r *hashReader) Read(p []byte) (int, error) {
	n, err := r.src.Read(p)
	r.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(r.h.Sum(nil)); got != r.want {
			return n, reject(0, "checksum: %s is %s, the sidecar says %s", r.algorithm, got, r.want)
		}
	}
	return n, err
}

// SidecarAlgorithm returns the digest algorithm ("sha256" or "md5") of the sidecar a step needs
// from its caller — a verify-checksum step without an expected option — or "" when the step
// needs none.
func SidecarAlgorithm(st Step) string {
	if st.Name != "verify-checksum" {
		return ""
	}
	if exp, _ := st.Options["expected"].(string); exp != "" {
		return ""
	}
	if alg, _ := st.Options["algorithm"].(string); alg != "" {
		return alg
	}
	return "sha256"
}
