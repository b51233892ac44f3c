package s3store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/vpath"
)

// Attribute markers record the modification time and mode a client set on a file (SFTP
// setstat/fsetstat, FTP MFMT and SITE CHMOD). The package doc says why they look like this;
// this file is their format and their reading and writing.
//
// The marker of file "dir/name" is a zero-byte object whose key holds everything:
//
//	dir/.ferry-attrs/<hex(name)>.1_<etag>_<lastmod>_<written>_<mtime>_<mode>/
//
//	etag     the object's ETag (unquoted) and lastmod its LastModified in Unix seconds: the
//	         object version the attributes were set on. A marker applies only while the
//	         object still has both; an overwrite (by Ferry or any S3 client) ends it.
//	written  the writer's clock in Unix nanoseconds: of several markers for one version, the
//	         latest written wins (ties: the greater key), the same choice on every replica.
//	mtime    "<unix seconds>.<nanoseconds>", or empty when only the mode was set.
//	mode     octal permission bits, or empty.
//
// Hex keeps the markers of a directory in the same order as its files ('.' sorts before every
// hex digit, so "a" comes before "a-b" in both), which lets a listing merge the two streams in
// one pass. All markers of a directory sit at one level (an S3 server on a file system, like
// versitygw, lists them without descending into a folder per file). The trailing slash makes a
// marker a directory marker to every S3 tool and to the pipeline, which ignore those.
const (
	attrDirName = ".ferry-attrs"
	markFormat  = "1"
)

// errNoRoom: the marker key would exceed S3's key length (very long names in deep paths).
var errNoRoom = fmt.Errorf("%w: no room for an attribute marker in the key", storage.ErrTooLarge)

// objVersion identifies one version of an object as both a HEAD and a listing show it.
type objVersion struct {
	etag string // unquoted
	lm   int64  // LastModified in Unix seconds (a HEAD has no finer precision)
}

func versionOf(etag *string, lastModified *time.Time) objVersion {
	return objVersion{etag: strings.Trim(aws.ToString(etag), `"`), lm: aws.ToTime(lastModified).Unix()}
}

// attrMark is one parsed marker.
type attrMark struct {
	key     string
	version objVersion
	written int64
	mtime   *time.Time
	mode    *fs.FileMode
}

// after reports whether m ranks above o (they record the same version).
func (m attrMark) after(o attrMark) bool {
	if m.written != o.written {
		return m.written > o.written
	}
	return m.key > o.key
}

// apply sets e's time and mode from m.
func (m attrMark) apply(e *storage.Entry) {
	if m.mtime != nil {
		e.ModTime = *m.mtime
	}
	if m.mode != nil {
		e.Mode = *m.mode
	}
}

// attrs is what m records, as SetStat takes it.
func (m attrMark) attrs() storage.Attrs { return storage.Attrs{Mode: m.mode, ModTime: m.mtime} }

func markKeys(marks []attrMark) []string {
	keys := make([]string, len(marks))
	for i, m := range marks {
		keys[i] = m.key
	}
	return keys
}

// markDir is the prefix holding the markers of the files of directory prefix dir.
func markDir(dir string) string { return dir + attrDirName + "/" }

// splitKey splits a file key into its directory prefix ("" or ending in "/") and base name.
func splitKey(key string) (dir, name string) {
	i := strings.LastIndexByte(key, '/') + 1
	return key[:i], key[i:]
}

// markPrefix is the prefix of every marker of the file at key.
func markPrefix(key string) string {
	dir, name := splitKey(key)
	return markDir(dir) + hexName(name) + "."
}

func hexName(name string) string { return hex.EncodeToString([]byte(name)) }

// encode renders m's key for the file at key.
func (m attrMark) encode(key string) string {
	var mtime, mode string
	if m.mtime != nil {
		mtime = strconv.FormatInt(m.mtime.Unix(), 10)
		if ns := m.mtime.Nanosecond(); ns != 0 {
			mtime += fmt.Sprintf(".%09d", ns)
		}
	}
	if m.mode != nil {
		mode = strconv.FormatUint(uint64(m.mode.Perm()), 8)
	}
	return fmt.Sprintf("%s%s_%s_%d_%d_%s_%s/", markPrefix(key), markFormat, m.version.etag, m.version.lm, m.written, mtime, mode)
}

// parseMark parses a marker from rel, its key after markDir: "<hex(name)>.<fields>/". It
// returns the file's name too. Keys of another form (other tools, later formats) are not
// markers.
func parseMark(rel string) (name string, m attrMark, ok bool) {
	hexName, rest, found := strings.Cut(rel, ".")
	if !found || !strings.HasSuffix(rest, "/") || strings.Count(rest, "/") != 1 {
		return "", m, false
	}
	raw, err := hex.DecodeString(hexName)
	if err != nil {
		return "", m, false
	}
	f := strings.Split(strings.TrimSuffix(rest, "/"), "_")
	if len(f) != 6 || f[0] != markFormat || !validETag(f[1]) {
		return "", m, false
	}
	m.version.etag = f[1]
	if m.version.lm, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return "", m, false
	}
	if m.written, err = strconv.ParseInt(f[3], 10, 64); err != nil {
		return "", m, false
	}
	if f[4] != "" {
		secStr, nsStr, _ := strings.Cut(f[4], ".")
		sec, err := strconv.ParseInt(secStr, 10, 64)
		if err != nil {
			return "", m, false
		}
		var ns int64
		if nsStr != "" {
			if ns, err = strconv.ParseInt(nsStr, 10, 64); err != nil || ns < 0 || ns > 999999999 {
				return "", m, false
			}
		}
		t := time.Unix(sec, ns).UTC()
		m.mtime = &t
	}
	if f[5] != "" {
		bits, err := strconv.ParseUint(f[5], 8, 32)
		if err != nil {
			return "", m, false
		}
		mode := fs.FileMode(bits).Perm()
		m.mode = &mode
	}
	return string(raw), m, true
}

// validETag accepts what S3 and S3-compatible servers return (hex, "-N" for multipart).
func validETag(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-') {
			return false
		}
	}
	return true
}

// best returns the marker that applies to version v.
func best(marks []attrMark, v objVersion) (attrMark, bool) {
	var top attrMark
	found := false
	for _, m := range marks {
		if m.version == v && (!found || m.after(top)) {
			top, found = m, true
		}
	}
	return top, found
}

// reservedName reports whether a client path names the markers' directory anywhere.
func reservedName(clean string) bool {
	for seg := range strings.SplitSeq(clean, "/") {
		if seg == attrDirName {
			return true
		}
	}
	return false
}

// marks returns every marker recorded for the file at key, whatever version it names.
func (h *homeFS) marks(ctx context.Context, key string) ([]attrMark, error) {
	prefix := markPrefix(key)
	if len(prefix) > vpath.MaxKeyLen {
		return nil, nil
	}
	dir := markDir(dirOf(key))
	var out []attrMark
	pages := s3.NewListObjectsV2Paginator(h.s.api, &s3.ListObjectsV2Input{
		Bucket: &h.bucket, Prefix: &prefix, MaxKeys: aws.Int32(h.s.cfg.ListPageSize),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if _, m, ok := parseMark(strings.TrimPrefix(k, dir)); ok {
				m.key = k
				out = append(out, m)
			}
		}
	}
	return out, nil
}

func dirOf(key string) string {
	dir, _ := splitKey(key)
	return dir
}

// writeMark records attrs for version v of the file at key, merged with what is recorded for
// that version in existing (the file's markers as listed just before), then deletes the
// markers it supersedes: those of other versions and those it outranks. A marker another
// replica wrote after that listing is left alone, so concurrent writers never delete each
// other's latest marker; the reader's ranking picks one for everybody.
func (h *homeFS) writeMark(ctx context.Context, key string, v objVersion, attrs storage.Attrs, existing []attrMark) error {
	if !validETag(v.etag) {
		return fmt.Errorf("%w: ETag %q cannot be recorded", storage.ErrUnsupported, v.etag)
	}
	m, _ := best(existing, v)
	m.version, m.written = v, h.s.stamp()
	if attrs.ModTime != nil {
		t := attrs.ModTime.UTC()
		m.mtime = &t
	}
	if attrs.Mode != nil {
		p := attrs.Mode.Perm()
		m.mode = &p
	}
	m.key = m.encode(key)
	if len(m.key) > vpath.MaxKeyLen {
		return errNoRoom
	}
	if _, err := h.s.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &h.bucket, Key: &m.key, Body: strings.NewReader(""), ContentLength: aws.Int64(0),
	}); err != nil {
		return err
	}
	var old []string
	for _, o := range existing {
		if o.version != v || m.after(o) {
			old = append(old, o.key)
		}
	}
	h.dropMarks(ctx, old)
	return nil
}

// dropMarks deletes marker keys. A failure only leaves a marker no version matches (or one
// that is outranked), which readers skip, so it is logged, not returned.
func (h *homeFS) dropMarks(ctx context.Context, keys []string) {
	if len(keys) == 0 {
		return
	}
	if err := h.deleteKeys(ctx, keys); err != nil {
		h.s.log.WarnContext(ctx, "delete superseded attribute markers", "keys", len(keys), "err", err)
	}
}

// dropAllMarks deletes every marker of the file at key (after the file is gone).
func (h *homeFS) dropAllMarks(ctx context.Context, key string) {
	marks, err := h.marks(ctx, key)
	if err != nil {
		h.s.log.WarnContext(ctx, "list attribute markers", "key", key, "err", err)
		return
	}
	h.dropMarks(ctx, markKeys(marks))
}

// recordAttrs writes attrs for the object now at key (after an upload or a copy), removing the
// markers of its earlier versions. The HEAD gives the version as listings will show it.
func (h *homeFS) recordAttrs(ctx context.Context, key string, attrs storage.Attrs) error {
	type listed struct {
		marks []attrMark
		err   error
	}
	ch := make(chan listed, 1)
	go func() {
		marks, err := h.marks(ctx, key)
		ch <- listed{marks, err}
	}()
	head, herr := h.head(ctx, key)
	l := <-ch
	if err := errors.Join(herr, l.err); err != nil {
		return err
	}
	return h.writeMark(ctx, key, versionOf(head.ETag, head.LastModified), attrs, l.marks)
}

// stamp is the writer's clock for markers: wall time in nanoseconds, strictly increasing
// within this process so two settings in a row are always ordered.
func (s *Store) stamp() int64 {
	for {
		last := s.clock.Load()
		now := time.Now().UnixNano()
		if now <= last {
			now = last + 1
		}
		if s.clock.CompareAndSwap(last, now) {
			return now
		}
	}
}
