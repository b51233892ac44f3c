package s3store

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/storagetest"
	"github.com/ferrygw/ferry/pipeline/testtool/s3test"
)

const testPartSize = 5 << 20

func newStore(t *testing.T, api API, cfg Config) *Store {
	t.Helper()
	if cfg.PartSize == 0 {
		cfg.PartSize = testPartSize
	}
	s, err := New(api, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestContract runs the storage contract suite against versitygw, each test in its own home
// prefix of one bucket (siblings, as the jail tests need).
func TestContract(t *testing.T) {
	srv := s3test.Start(t)
	s := newStore(t, srv.Client(), Config{Bucket: srv.Bucket, MaxRenameKeys: 50})
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) storage.FS {
		return s.Home("", fmt.Sprintf("homes/u%d", n.Add(1)))
	})
}
