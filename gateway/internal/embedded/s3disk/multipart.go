package s3disk

import (
	"cmp"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// upload is a multipart upload in progress. mu serialises part renames, completion and abort
// of this upload only; part bodies are written without it.
type upload struct {
	uploadFile
	id   gofakes3.UploadID
	mu   sync.Mutex
	gone atomic.Bool // completed or aborted
}

type uploadFile struct {
	Bucket    string            `json:"bucket"`
	Key       string            `json:"key"`
	Meta      map[string]string `json:"meta,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
	Initiated time.Time         `json:"initiated"`
}

type partFile struct {
	number  int
	etag    string // unquoted MD5
	name    string
	size    int64
	modTime time.Time
}

func (b *Backend) uploadDir(id gofakes3.UploadID) string {
	return filepath.Join(b.uploadsDir(), string(id))
}

// validUploadID accepts only the IDs this backend makes, so an ID never names another path.
func validUploadID(id gofakes3.UploadID) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range []byte(id) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (b *Backend) loadUploads() error {
	ents, err := os.ReadDir(b.uploadsDir())
	if err != nil {
		return fmt.Errorf("s3disk: load uploads: %w", err)
	}
	for _, e := range ents {
		id := gofakes3.UploadID(e.Name())
		dir := b.uploadDir(id)
		var uf uploadFile
		data, err := os.ReadFile(filepath.Join(dir, "upload.json"))
		if err == nil {
			err = json.Unmarshal(data, &uf)
		}
		if err != nil || !validUploadID(id) || b.buckets[uf.Bucket] == nil {
			// Interrupted creation, or its bucket is gone.
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("s3disk: clean upload %s: %w", e.Name(), err)
			}
			continue
		}
		b.uploads[id] = &upload{uploadFile: uf, id: id}
	}
	return nil
}

func (b *Backend) getUpload(bucketName, key string, id gofakes3.UploadID) (*upload, error) {
	if !validUploadID(id) {
		return nil, gofakes3.ErrNoSuchUpload
	}
	b.upMu.Lock()
	u, ok := b.uploads[id]
	b.upMu.Unlock()
	if !ok || u.gone.Load() || u.Bucket != bucketName || u.Key != key {
		return nil, gofakes3.ErrNoSuchUpload
	}
	return u, nil
}

func (b *Backend) forgetUpload(u *upload) {
	u.gone.Store(true)
	b.upMu.Lock()
	delete(b.uploads, u.id)
	b.upMu.Unlock()
	if err := os.RemoveAll(b.uploadDir(u.id)); err != nil {
		b.log.Warn("remove multipart upload", "upload_id", u.id, "err", err)
	}
}

// abortBucketUploads drops the uploads of a bucket being deleted (b.mu held). It takes no
// upload lock: a completion in progress fails at its commit, which needs the bucket.
func (b *Backend) abortBucketUploads(bucketName string) {
	b.upMu.Lock()
	var drop []*upload
	for _, u := range b.uploads {
		if u.Bucket == bucketName {
			drop = append(drop, u)
		}
	}
	b.upMu.Unlock()
	for _, u := range drop {
		b.forgetUpload(u)
	}
}

// ExpireUploads aborts the multipart uploads initiated before cutoff, as S3's lifecycle rule
// AbortIncompleteMultipartUpload does (days after initiation), and returns how many it removed.
// An upload completing at the same moment wins or loses under its own lock, as with an abort.
func (b *Backend) ExpireUploads(cutoff time.Time) int {
	b.upMu.Lock()
	var old []*upload
	for _, u := range b.uploads {
		if u.Initiated.Before(cutoff) {
			old = append(old, u)
		}
	}
	b.upMu.Unlock()
	n := 0
	for _, u := range old {
		u.mu.Lock()
		if !u.gone.Load() {
			b.forgetUpload(u)
			n++
			b.log.Info("expired an incomplete multipart upload", "bucket", u.Bucket, "key", u.Key,
				"upload_id", u.id, "initiated", u.Initiated)
		}
		u.mu.Unlock()
	}
	return n
}

// CreateMultipartUpload implements gofakes3.MultipartBackend.
func (b *Backend) CreateMultipartUpload(bucketName, key string, meta map[string]string) (gofakes3.UploadID, error) {
	if err := validKey(key); err != nil {
		return "", err
	}
	if _, err := b.bucket(bucketName); err != nil {
		return "", err
	}
	tags, err := tagsFromMeta(meta)
	if err != nil {
		return "", err
	}
	m, err := cleanMeta(meta)
	if err != nil {
		return "", err
	}
	u := &upload{
		uploadFile: uploadFile{Bucket: bucketName, Key: key, Meta: m, Tags: tags, Initiated: b.opts.Now().UTC()},
		id:         gofakes3.UploadID(randomHex(16)),
	}
	data, err := json.Marshal(u.uploadFile)
	if err != nil {
		return "", fmt.Errorf("s3disk: create upload: %w", err)
	}
	dir := b.uploadDir(u.id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("s3disk: create upload: %w", err)
	}
	if err := b.writeFileAtomic(filepath.Join(dir, "upload.json"), data); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("s3disk: create upload: %w", err)
	}
	b.upMu.Lock()
	b.uploads[u.id] = u
	b.upMu.Unlock()
	return u.id, nil
}

// UploadPart implements gofakes3.MultipartBackend: the part is streamed to a temp file and
// renamed into the upload's directory, replacing an earlier part with the same number.
func (b *Backend) UploadPart(bucketName, key string, id gofakes3.UploadID, partNumber int, contentLength int64, input io.Reader) (string, error) {
	if partNumber < 1 || partNumber > gofakes3.MaxUploadPartNumber {
		return "", gofakes3.ErrInvalidPart
	}
	u, err := b.getUpload(bucketName, key, id)
	if err != nil {
		return "", err
	}
	tmp, _, sum, err := b.writeBody("part", input, contentLength)
	if err != nil {
		return "", err
	}
	etag := hex.EncodeToString(sum)
	if err := b.addPart(u, partNumber, etag, tmp); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return quote(etag), nil
}

// UploadPartCopy stores bytes of an existing object (all, or the range) as a part.
func (b *Backend) UploadPartCopy(bucketName, key string, id gofakes3.UploadID, partNumber int, srcBucket, srcKey string, rng *gofakes3.ObjectRangeRequest) (etag string, modTime time.Time, err error) {
	if partNumber < 1 || partNumber > gofakes3.MaxUploadPartNumber {
		return "", time.Time{}, gofakes3.ErrInvalidPart
	}
	u, err := b.getUpload(bucketName, key, id)
	if err != nil {
		return "", time.Time{}, err
	}
	obj, _, err := b.Open(srcBucket, srcKey, rng, true)
	if err != nil {
		return "", time.Time{}, err
	}
	defer obj.Contents.Close()
	size := obj.Size
	if obj.Range != nil {
		size = obj.Range.Length
	}
	tmp, _, sum, err := b.writeBody("part", obj.Contents, size)
	if err != nil {
		return "", time.Time{}, err
	}
	etag = hex.EncodeToString(sum)
	if err := b.addPart(u, partNumber, etag, tmp); err != nil {
		os.Remove(tmp)
		return "", time.Time{}, err
	}
	return quote(etag), b.opts.Now().UTC(), nil
}

func (b *Backend) addPart(u *upload, number int, etag, tmp string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.gone.Load() {
		return gofakes3.ErrNoSuchUpload
	}
	dir := b.uploadDir(u.id)
	name := fmt.Sprintf("part-%05d-%s", number, etag)
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return gofakes3.ErrNoSuchUpload
		}
		return fmt.Errorf("s3disk: upload part: %w", err)
	}
	parts, err := b.parts(u)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if p.number == number && p.name != name {
			os.Remove(filepath.Join(dir, p.name))
		}
	}
	return nil
}

// parts lists the parts on disk in part-number order (u.mu held).
func (b *Backend) parts(u *upload) ([]partFile, error) {
	ents, err := os.ReadDir(b.uploadDir(u.id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, gofakes3.ErrNoSuchUpload
	} else if err != nil {
		return nil, fmt.Errorf("s3disk: list parts: %w", err)
	}
	var out []partFile
	for _, e := range ents {
		num, etag, ok := strings.Cut(strings.TrimPrefix(e.Name(), "part-"), "-")
		if !ok || !strings.HasPrefix(e.Name(), "part-") {
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // replaced meanwhile
		}
		out = append(out, partFile{number: n, etag: etag, name: e.Name(), size: fi.Size(), modTime: fi.ModTime()})
	}
	slices.SortFunc(out, func(a, b partFile) int { return cmp.Compare(a.number, b.number) })
	return out, nil
}

// ListParts implements gofakes3.MultipartBackend.
func (b *Backend) ListParts(bucketName, key string, id gofakes3.UploadID, marker int, limit int64) (*gofakes3.ListMultipartUploadPartsResult, error) {
	u, err := b.getUpload(bucketName, key, id)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	parts, err := b.parts(u)
	u.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = gofakes3.DefaultMaxUploadParts
	}
	res := &gofakes3.ListMultipartUploadPartsResult{
		Bucket: bucketName, Key: key, UploadID: id, StorageClass: gofakes3.StorageStandard,
		PartNumberMarker: marker, MaxParts: limit,
	}
	for _, p := range parts {
		if p.number <= marker {
			continue
		}
		if int64(len(res.Parts)) == limit {
			res.IsTruncated = true
			break
		}
		res.Parts = append(res.Parts, gofakes3.ListMultipartUploadPartItem{
			PartNumber: p.number, ETag: quote(p.etag), Size: p.size,
			LastModified: gofakes3.NewContentTime(p.modTime),
		})
		res.NextPartNumberMarker = p.number
	}
	return res, nil
}

// AbortMultipartUpload implements gofakes3.MultipartBackend: the parts are removed.
func (b *Backend) AbortMultipartUpload(bucketName, key string, id gofakes3.UploadID) error {
	u, err := b.getUpload(bucketName, key, id)
	if err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.gone.Load() {
		return gofakes3.ErrNoSuchUpload
	}
	b.forgetUpload(u)
	return nil
}

// CompleteMultipartUpload implements gofakes3.MultipartBackend.
func (b *Backend) CompleteMultipartUpload(bucketName, key string, id gofakes3.UploadID, input *gofakes3.CompleteMultipartUploadRequest) (gofakes3.VersionID, string, error) {
	info, err := b.Complete(bucketName, key, id, input, nil)
	if err != nil {
		return "", "", err
	}
	return "", info.ETag, nil
}

// Complete checks the listed parts against those on disk, concatenates them (a kernel copy,
// never through memory) into a temp file and commits it as the object, with S3's multipart
// ETag: the MD5 of the parts' binary MD5s, then "-" and the number of parts. cond (If-Match,
// If-None-Match) is checked atomically with the commit, as S3 does; when it fails the upload
// stays in progress, as on S3, for the client to abort or complete again.
func (b *Backend) Complete(bucketName, key string, id gofakes3.UploadID, input *gofakes3.CompleteMultipartUploadRequest, cond *gofakes3.PutConditions) (ObjectInfo, error) {
	u, err := b.getUpload(bucketName, key, id)
	if err != nil {
		return ObjectInfo{}, err
	}
	bk, err := b.bucket(bucketName)
	if err != nil {
		return ObjectInfo{}, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.gone.Load() {
		return ObjectInfo{}, gofakes3.ErrNoSuchUpload
	}
	if input == nil || len(input.Parts) == 0 {
		return ObjectInfo{}, gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "You must specify at least one part")
	}
	onDisk, err := b.parts(u)
	if err != nil {
		return ObjectInfo{}, err
	}
	byName := map[string]partFile{}
	for _, p := range onDisk {
		byName[p.name] = p
	}
	for i := 1; i < len(input.Parts); i++ {
		if input.Parts[i].PartNumber <= input.Parts[i-1].PartNumber {
			return ObjectInfo{}, gofakes3.ErrInvalidPartOrder
		}
	}
	chosen := make([]partFile, 0, len(input.Parts))
	for i, in := range input.Parts {
		etag := strings.ToLower(strings.Trim(in.ETag, `" `))
		p, ok := byName[fmt.Sprintf("part-%05d-%s", in.PartNumber, etag)]
		if !ok {
			return ObjectInfo{}, gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "One or more of the specified parts could not be found (part %d)", in.PartNumber)
		}
		if i < len(input.Parts)-1 && b.opts.MinPartSize > 0 && p.size < b.opts.MinPartSize {
			return ObjectInfo{}, gofakes3.ErrorMessage(CodeEntityTooSmall, "Your proposed upload is smaller than the minimum allowed object size.")
		}
		chosen = append(chosen, p)
	}
	tmp, size, etag, err := b.concat(u, chosen)
	if err != nil {
		return ObjectInfo{}, err
	}
	rec := &record{Key: key, Size: size, ETag: etag, Meta: u.Meta, Tags: u.Tags}
	if err := b.commit(bk, rec, tmp, cond); err != nil {
		return ObjectInfo{}, err
	}
	b.forgetUpload(u)
	return rec.info(bucketName), nil
}

func (b *Backend) concat(u *upload, parts []partFile) (path string, size int64, etag string, err error) {
	f, err := b.createTemp("complete")
	if err != nil {
		return "", 0, "", fmt.Errorf("s3disk: complete: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := md5.New()
	for _, p := range parts {
		sum, _ := hex.DecodeString(p.etag)
		h.Write(sum)
		pf, err := os.Open(filepath.Join(b.uploadDir(u.id), p.name))
		if err != nil {
			return "", 0, "", fmt.Errorf("s3disk: complete: %w", err)
		}
		n, err := io.Copy(f, pf) // copy_file_range on Linux
		pf.Close()
		if err != nil {
			return "", 0, "", fmt.Errorf("s3disk: complete: %w", err)
		}
		size += n
	}
	if err = f.Sync(); err != nil {
		return "", 0, "", fmt.Errorf("s3disk: complete: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", 0, "", fmt.Errorf("s3disk: complete: %w", err)
	}
	return f.Name(), size, fmt.Sprintf("%x-%d", h.Sum(nil), len(parts)), nil
}

// ListMultipartUploads implements gofakes3.MultipartBackend: uploads in progress sorted by key,
// then initiation time, with S3's prefix, delimiter and marker handling.
func (b *Backend) ListMultipartUploads(bucketName string, marker *gofakes3.UploadListMarker, prefix gofakes3.Prefix, limit int64) (*gofakes3.ListMultipartUploadsResult, error) {
	if _, err := b.bucket(bucketName); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = gofakes3.DefaultMaxUploads
	}
	b.upMu.Lock()
	var ups []*upload
	for _, u := range b.uploads {
		if u.Bucket == bucketName && !u.gone.Load() && strings.HasPrefix(u.Key, prefix.Prefix) {
			ups = append(ups, u)
		}
	}
	b.upMu.Unlock()
	slices.SortFunc(ups, func(x, y *upload) int {
		return cmp.Or(strings.Compare(x.Key, y.Key), x.Initiated.Compare(y.Initiated), strings.Compare(string(x.id), string(y.id)))
	})
	res := &gofakes3.ListMultipartUploadsResult{
		Bucket: bucketName, MaxUploads: limit, Prefix: prefix.Prefix, Delimiter: prefix.Delimiter,
	}
	if marker != nil {
		res.KeyMarker, res.UploadIDMarker = marker.Object, marker.UploadID
		skip := 0
		for i, u := range ups {
			if u.Key < marker.Object || (u.Key == marker.Object && marker.UploadID == "") {
				skip = i + 1
			} else if u.Key == marker.Object && u.id == marker.UploadID {
				skip = i + 1
				break
			}
		}
		ups = ups[skip:]
	}
	seen := map[string]bool{}
	var count int64
	for _, u := range ups {
		cp := ""
		if prefix.HasDelimiter && prefix.Delimiter != "" {
			if j := strings.Index(u.Key[len(prefix.Prefix):], prefix.Delimiter); j >= 0 {
				cp = u.Key[:len(prefix.Prefix)+j+len(prefix.Delimiter)]
			}
		}
		if cp != "" && seen[cp] {
			continue
		}
		if count == limit {
			res.IsTruncated = true
			break
		}
		count++
		if cp != "" {
			seen[cp] = true
			res.CommonPrefixes = append(res.CommonPrefixes, gofakes3.CommonPrefix{Prefix: cp})
			continue
		}
		res.Uploads = append(res.Uploads, gofakes3.ListMultipartUploadItem{
			Key: u.Key, UploadID: u.id, StorageClass: gofakes3.StorageStandard,
			Initiated: gofakes3.NewContentTime(u.Initiated),
		})
		res.NextKeyMarker, res.NextUploadIDMarker = u.Key, u.id
	}
	return res, nil
}
