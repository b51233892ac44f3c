package memstore

import (
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/storagetest"
)

// The memory store passes the same contract suite as the S3 store, so front-end tests over it
// see the semantics production has.
func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.FS { return New() })
}
