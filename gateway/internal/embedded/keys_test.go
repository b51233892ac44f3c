package embedded

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/s3keys"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// TestUserKeys: a user's key opens to its secret and the user's grant; a disabled user's key
// is unknown; an address outside allowed_cidrs, or a missing key-encryption key, refuses it.
func TestUserKeys(t *testing.T) {
	const kek = "q4ZTvUOj2vx1i0xkSpSqcTW8O2mclQ4YW7cvIL8GjVQ="
	raw, _ := s3keys.ParseKEK(kek)
	sealer, _ := s3keys.NewSealer(raw)
	seal := func(user, id, secret string) string {
		s, err := sealer.Seal(user, id, secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	file := filepath.Join(t.TempDir(), "users.yaml")
	content := "users:\n" +
		"  - name: alice\n    home: incoming/alice/\n    permissions: [list, upload]\n    allowed_cidrs: [10.0.0.0/8]\n" +
		"    s3_keys: [{id: FRYALICE000000000001, secret: \"" + seal("alice", "FRYALICE000000000001", "alice-secret") + "\"}]\n" +
		"  - name: bob\n    home: b/\n    bucket: other\n    permissions: [\"*\"]\n    disabled: true\n" +
		"    s3_keys: [{id: FRYBOB00000000000001, secret: \"" + seal("bob", "FRYBOB00000000000001", "bob-secret") + "\"}]\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := users.Open(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Storage.S3.Bucket = "ferry"
	cfg.Embedded.S3.KeyEncryptionKey = kek
	k, err := newUserKeys(cfg)
	if err != nil {
		t.Fatal(err)
	}
	inside, outside := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.1")
	if _, _, ok, _ := k.S3Key("FRYALICE000000000001", inside); ok {
		t.Error("a key known before the users were loaded")
	}
	k.start(store, slog.New(slog.DiscardHandler))
	secret, g, ok, err := k.S3Key("FRYALICE000000000001", inside)
	if !ok || err != nil || secret != "alice-secret" || g.User != "alice" || g.Bucket != "ferry" || g.Home != "incoming/alice/" ||
		!g.List || !g.Upload || g.Download || g.Overwrite || g.Delete {
		t.Errorf("alice: %q %+v %v %v", secret, g, ok, err)
	}
	if _, _, ok, err := k.S3Key("FRYALICE000000000001", outside); !ok || err == nil || !strings.Contains(err.Error(), "allowed_cidrs") {
		t.Errorf("from outside allowed_cidrs: %v %v", ok, err)
	}
	if _, _, ok, _ := k.S3Key("FRYBOB00000000000001", inside); ok {
		t.Error("a disabled user's key is known")
	}
	cfg.Embedded.S3.KeyEncryptionKey = ""
	noKEK, _ := newUserKeys(cfg)
	noKEK.start(store, slog.New(slog.DiscardHandler))
	if _, _, ok, err := noKEK.S3Key("FRYALICE000000000001", inside); !ok || err == nil {
		t.Errorf("without a key-encryption key: %v %v", ok, err)
	}
	cfg.Embedded.S3.KeyEncryptionKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	wrong, _ := newUserKeys(cfg)
	wrong.start(store, slog.New(slog.DiscardHandler))
	if _, _, _, err := wrong.S3Key("FRYALICE000000000001", inside); !errors.Is(err, s3keys.ErrWrongKey) {
		t.Errorf("another key-encryption key: %v", err)
	}
}
