package s3disk

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// bucket is the in-memory index of one bucket: what listings need, in key order.
type bucket struct {
	name    string
	created time.Time

	mu   sync.RWMutex
	keys []string // sorted
	objs map[string]indexEntry
}

type indexEntry struct {
	size    int64
	etag    string // unquoted
	modTime time.Time
	data    string // body file name
}

func newBucket(name string) *bucket {
	return &bucket{name: name, objs: map[string]indexEntry{}}
}

func (bk *bucket) sortKeys() { sort.Strings(bk.keys) }

func (bk *bucket) len() int {
	bk.mu.RLock()
	defer bk.mu.RUnlock()
	return len(bk.keys)
}

func (bk *bucket) set(key string, e indexEntry) {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	if _, ok := bk.objs[key]; !ok {
		i, _ := slices.BinarySearch(bk.keys, key)
		bk.keys = slices.Insert(bk.keys, i, key)
	}
	bk.objs[key] = e
}

func (bk *bucket) remove(key string) {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	if _, ok := bk.objs[key]; !ok {
		return
	}
	delete(bk.objs, key)
	if i, found := slices.BinarySearch(bk.keys, key); found {
		bk.keys = slices.Delete(bk.keys, i, i+1)
	}
}

func (bk *bucket) get(key string) (indexEntry, bool) {
	bk.mu.RLock()
	defer bk.mu.RUnlock()
	e, ok := bk.objs[key]
	return e, ok
}

// ListBucket implements gofakes3.Backend with S3's semantics: keys after the marker that start
// with the prefix, in UTF-8 byte order; with a delimiter, keys that contain it after the prefix
// roll up into one common prefix, which counts against MaxKeys like a key.
func (b *Backend) ListBucket(name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	bk, err := b.bucket(name)
	if err != nil {
		return nil, err
	}
	var pfx, delim string
	if prefix != nil {
		if prefix.HasPrefix {
			pfx = prefix.Prefix
		}
		if prefix.HasDelimiter {
			delim = prefix.Delimiter
		}
	}
	maxKeys := page.MaxKeys
	if maxKeys <= 0 {
		maxKeys = gofakes3.DefaultMaxBucketKeys
	}
	marker := ""
	if page.HasMarker {
		marker = page.Marker
	}

	bk.mu.RLock()
	defer bk.mu.RUnlock()
	out := gofakes3.NewObjectList()
	start := max(pfx, marker)
	i, _ := slices.BinarySearch(bk.keys, start)
	// A marker that is itself a common prefix (the last item of the previous page) skips
	// everything under it.
	skipUnder := ""
	if rest, ok := strings.CutPrefix(marker, pfx); ok && delim != "" && rest != "" &&
		strings.Index(rest, delim) == len(rest)-len(delim) {
		skipUnder = marker
	}
	var count int64
	last := ""
	for ; i < len(bk.keys); i++ {
		key := bk.keys[i]
		if !strings.HasPrefix(key, pfx) {
			break
		}
		if marker != "" && key <= marker {
			continue
		}
		if skipUnder != "" && strings.HasPrefix(key, skipUnder) {
			continue
		}
		cp := ""
		if delim != "" {
			if j := strings.Index(key[len(pfx):], delim); j >= 0 {
				cp = key[:len(pfx)+j+len(delim)]
			}
		}
		if cp != "" && cp == last {
			continue // rolled up into the prefix just added
		}
		if count == maxKeys {
			out.IsTruncated = true
			out.NextMarker = last
			break
		}
		count++
		if cp != "" {
			out.AddPrefix(cp)
			last = cp
			continue
		}
		e := bk.objs[key]
		out.Add(&gofakes3.Content{
			Key:          key,
			LastModified: gofakes3.NewContentTime(e.modTime),
			ETag:         quote(e.etag),
			Size:         e.size,
			StorageClass: gofakes3.StorageStandard,
		})
		last = key
	}
	return out, nil
}

func quote(etag string) string { return `"` + etag + `"` }
