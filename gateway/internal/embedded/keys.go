package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/embedded/s3server"
	"github.com/ferrygw/ferry/gateway/internal/s3keys"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// userKeys lets users' S3 access keys into the embedded endpoint, each confined to its user's
// bucket, home and permissions, as over SFTP and FTP. The users are set once loaded: the users
// file may be an object of the endpoint itself, which is served before they are read; until
// then every user key is unknown.
type userKeys struct {
	users  atomic.Pointer[users.Store]
	sealer *s3keys.Sealer // nil: no key-encryption key, so no user key can be opened
	bucket string         // the storage bucket, for users without their own
}

var _ s3server.Keys = (*userKeys)(nil)

func newUserKeys(cfg *config.Config) (*userKeys, error) {
	k := &userKeys{bucket: cfg.Storage.S3.Bucket}
	if kek := cfg.Embedded.S3.KeyEncryptionKey; kek != "" {
		raw, err := s3keys.ParseKEK(kek)
		if err != nil {
			return nil, fmt.Errorf("embedded.s3.key_encryption_key: %w", err)
		}
		if k.sealer, err = s3keys.NewSealer(raw); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// start puts store's users in force and says, once, when their keys cannot work.
func (k *userKeys) start(store *users.Store, logger *slog.Logger) {
	k.users.Store(store)
	n := 0
	for _, u := range store.All() {
		n += len(u.S3Keys)
	}
	if n > 0 && k.sealer == nil {
		logger.Warn("users have S3 keys but embedded.s3.key_encryption_key is not set: they are refused", "keys", n)
	}
}

func (k *userKeys) S3Key(id string, remote netip.Addr) (string, s3server.Grant, bool, error) {
	store := k.users.Load()
	if store == nil {
		return "", s3server.Grant{}, false, nil
	}
	u, key, ok := store.LookupS3Key(id)
	if !ok || u.Disabled {
		return "", s3server.Grant{}, false, nil
	}
	p := u.Permissions
	g := s3server.Grant{User: u.Name, Bucket: u.Bucket, Home: u.Home,
		List: p.List, Download: p.Download, Upload: p.Upload, Overwrite: p.Overwrite, Delete: p.Delete}
	if g.Bucket == "" {
		g.Bucket = k.bucket
	}
	if !u.AllowedFrom(remote) {
		return "", g, true, fmt.Errorf("address %s is not in the user's allowed_cidrs", remote)
	}
	if k.sealer == nil {
		return "", g, true, errors.New("embedded.s3.key_encryption_key is not set: users' S3 secrets cannot be opened")
	}
	secret, err := k.sealer.Open(u.Name, id, key.Sealed)
	if err != nil {
		return "", g, true, err
	}
	return secret, g, true, nil
}
