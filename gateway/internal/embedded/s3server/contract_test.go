package s3server

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/s3store"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/storagetest"
)

// TestStoreContract runs the storage contract suite over s3store, unchanged, against this
// endpoint: the gateway needs no second storage code path for the embedded default.
func TestStoreContract(t *testing.T) {
	h := newHarness(t)
	s, err := s3store.New(h.client, s3store.Config{Bucket: testBucket, PartSize: 5 << 20, MaxRenameKeys: 50})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) storage.FS {
		return s.Home("", fmt.Sprintf("homes/u%d", n.Add(1)))
	})
	h.tmpEmpty()
}
