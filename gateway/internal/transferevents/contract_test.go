package transferevents

import (
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/storage/storagetest"
	"github.com/ferrygw/ferry/pipeline/event"
)

// The decorator changes nothing a front end sees: the wrapped store still passes the storage
// contract suite, optional abilities (Setstater, Hasher, AttrRecorder) included.
func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.FS {
		sink := SinkFunc(func(event.GatewayEvent) {})
		return New(sink, Config{}).Wrap(memstore.New(), "sftp")
	})
}
