package app_test

import (
	"context"
	"errors"
	"fmt"
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
// transfermetrics in every order: SetStat, SHA256 and Space reach the store whatever the order
// (a decorator that hid one would make setstat, HASH or df silently stop working).
func TestDecoratorsKeepOptionalAbilities(t *testing.T) {
	wrap := map[string]func(storage.FS) storage.FS{
		"access": func(f storage.FS) storage.FS {
			return access.Restrict(f, users.Permissions{List: true, Download: true, Upload: true, Overwrite: true})
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
			sr, ok := fsys.(storage.SpaceReporter)
			if !ok {
				t.Fatal("SpaceReporter hidden")
			}
			if sp, err := sr.Space(ctx, "/"); err != nil || sp != roomy {
				t.Errorf("Space = %+v, %v; want %+v", sp, err, roomy)
			}
			mt := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
			if err := fsys.(storage.Setstater).SetStat(ctx, "/f", storage.Attrs{ModTime: &mt}); err != nil {
				t.Errorf("SetStat: %v", err)
			}
			if e, err := mem.Stat(ctx, "/f"); err != nil || !e.ModTime.Equal(mt) {
				t.Errorf("SetStat did not reach the store: %+v, %v", e, err)
			}
			if sum, err := fsys.(storage.Hasher).SHA256(ctx, "/f"); err != nil || len(sum) != 64 {
				t.Errorf("SHA256 = %q, %v", sum, err)
			}
			// Over a store without the ability, every order says so the same way.
			var bare storage.FS = struct{ storage.FS }{mem}
			for _, name := range order {
				bare = wrap[name](bare)
			}
			if _, err := bare.(storage.SpaceReporter).Space(ctx, "/"); !errors.Is(err, storage.ErrUnsupported) {
				t.Errorf("Space over a store without it: %v, want ErrUnsupported", err)
			}
		})
	}
}
