package app_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygw/ferry/gateway/internal/access"
	"github.com/ferrygw/ferry/gateway/internal/storage"
	"github.com/ferrygw/ferry/gateway/internal/storage/memstore"
	"github.com/ferrygw/ferry/gateway/internal/transferevents"
	"github.com/ferrygw/ferry/gateway/internal/transfermetrics"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/event"
)

// spaced is a store with every optional ability, the space figures being recognisable.
type spaced struct{ *memstore.FS }

var roomy = storage.Space{Total: 7 << 30, Free: 3 << 30, Files: 99, FreeFiles: 98, MaxNameLen: 42}

func (spaced) Space(context.Context, string) (storage.Space, error) { return roomy, nil }

// TestDecoratorsKeepOptionalAbilities wraps a store in access, transferevents and
// transfermetrics in every order: every optional interface of the store (SetStat, SHA256,
// Space, RenameNoReplace, SetStatIfWriter; Committed and SetAttrs on an upload) still works
// through storage.As and storage.UploadAs whatever the order (a decorator that hid one would make
// setstat, HASH, df, no-overwrite renames or the gateway's events silently stop working).
func TestDecoratorsKeepOptionalAbilities(t *testing.T) {
	t.Parallel()
	wrap := map[string]func(storage.FS) storage.FS{
		"access": func(f storage.FS) storage.FS {
			return access.Restrict(f, users.Permissions{List: true, Download: true, Upload: true, Overwrite: true, Rename: true}, access.User("alice"))
		},
		"events": func(f storage.FS) storage.FS {
			return transferevents.New(transferevents.SinkFunc(func(event.GatewayEvent) {}), transferevents.Config{}).Wrap(f, "sftp")
		},
		"metrics": func(f storage.FS) storage.FS { return transfermetrics.New(prometheus.NewRegistry()).Wrap(f, "sftp") },
	}
	orders := [][]string{
		{"access", "events", "metrics"}, {"access", "metrics", "events"}, {"events", "access", "metrics"},
		{"events", "metrics", "access"}, {"metrics", "access", "events"}, {"metrics", "events", "access"},
	}
	ctx := t.Context()
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			mem := memstore.New()
			if err := mem.WriteFile("/f", []byte("data")); err != nil {
				t.Fatal(err)
			}
			var fsys storage.FS = spaced{mem}
			for _, name := range order {
				fsys = wrap[name](fsys)
			}
			sr, ok := storage.As[storage.SpaceReporter](fsys)
			if !ok {
				t.Fatal("SpaceReporter hidden")
			}
			if sp, err := sr.Space(ctx, "/"); err != nil || sp != roomy {
				t.Errorf("Space = %+v, %v; want %+v", sp, err, roomy)
			}
			mt := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
			if ss, ok := storage.As[storage.Setstater](fsys); !ok {
				t.Error("Setstater hidden")
			} else if err := ss.SetStat(ctx, "/f", storage.Attrs{ModTime: &mt}); err != nil {
				t.Errorf("SetStat: %v", err)
			} else if e, err := mem.Stat(ctx, "/f"); err != nil || !e.ModTime.Equal(mt) {
				t.Errorf("SetStat did not reach the store: %+v, %v", e, err)
			}
			if h, ok := storage.As[storage.Hasher](fsys); !ok {
				t.Error("Hasher hidden")
			} else if sum, err := h.SHA256(ctx, "/f"); err != nil || len(sum) != 64 {
				t.Errorf("SHA256 = %q, %v", sum, err)
			}

			// An upload through the chain: Committed and SetAttrs reach the store's upload.
			up, err := fsys.Create(ctx, "/up", storage.CreateOptions{User: "alice", Protocol: "sftp"})
			if err != nil {
				t.Fatal(err)
			}
			rec, ok := storage.UploadAs[storage.AttrRecorder](up)
			if !ok {
				t.Fatal("AttrRecorder hidden")
			}
			rec.SetAttrs(storage.Attrs{ModTime: &mt})
			if _, err := up.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if err := up.Close(); err != nil {
				t.Fatal(err)
			}
			c, ok := storage.UploadAs[storage.Committer](up)
			if !ok {
				t.Fatal("Committer hidden")
			}
			if obj, ok := c.Committed(); !ok || obj.Size != 5 || len(obj.SHA256) != 64 {
				t.Errorf("Committed() = %+v, %v", obj, ok)
			}
			if e, err := mem.Stat(ctx, "/up"); err != nil || !e.ModTime.Equal(mt) {
				t.Errorf("SetAttrs did not reach the store: %+v, %v", e, err)
			}

			// RenameNoReplace and SetStatIfWriter: access implements them itself (permissions
			// first); whatever is outside it must not hide them.
			nr, ok := storage.As[storage.NoReplaceRenamer](fsys)
			if !ok {
				t.Fatal("NoReplaceRenamer hidden")
			}
			if err := nr.RenameNoReplace(ctx, "/up", "/f"); !errors.Is(err, fs.ErrExist) {
				t.Errorf("RenameNoReplace onto a file: %v, want fs.ErrExist", err)
			}
			if err := nr.RenameNoReplace(ctx, "/up", "/moved"); err != nil {
				t.Errorf("RenameNoReplace: %v", err)
			}
			ws, ok := storage.As[storage.WriterSetstater](fsys)
			if !ok {
				t.Fatal("WriterSetstater hidden")
			}
			if err := ws.SetStatIfWriter(ctx, "/moved", storage.Attrs{ModTime: &mt}, "alice"); err != nil {
				t.Errorf("SetStatIfWriter by the writer: %v", err)
			}
			if err := ws.SetStatIfWriter(ctx, "/moved", storage.Attrs{ModTime: &mt}, "mallory"); !errors.Is(err, fs.ErrPermission) {
				t.Errorf("SetStatIfWriter by another user: %v, want fs.ErrPermission", err)
			}

			// Over a store without the ability, every order says so the same way.
			var bare storage.FS = struct{ storage.FS }{mem}
			for _, name := range order {
				bare = wrap[name](bare)
			}
			if sr, ok := storage.As[storage.SpaceReporter](bare); ok {
				if _, err := sr.Space(ctx, "/"); !errors.Is(err, storage.ErrUnsupported) {
					t.Errorf("Space over a store without it: %v, want ErrUnsupported", err)
				}
			}
		})
	}
}
