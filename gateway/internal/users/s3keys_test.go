package users

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sealedA = "v1:0a1b2c3d:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// TestS3KeyEdits: adding and deleting S3 keys rewrites only the user's entry (the rest of the
// file keeps its comments), the store finds a key's user, and the file refuses what must
// never be there (a plain-text secret, a key id used twice).
func TestS3KeyEdits(t *testing.T) {
	h := testHash(t, "one", cost)
	base := `# Ferry users. Keep this comment.
users:
  # Alice runs the nightly export.
  - name: alice
    password_hash: "` + h + `"
    home: incoming/alice/
    permissions: [list, upload]
  # Bob only reads.
  - name: bob
    password_hash: "` + h + `"
    home: incoming/bob/
    permissions: [list, download]
`
	path := filepath.Join(t.TempDir(), "users.yaml")
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	src := LocalFile(path)
	ctx := context.Background()
	k1 := S3KeyEntry{ID: "FRYAAAAAAAAAAAAAAAA1", Secret: sealedA, Created: "2026-12-06T10:00:00Z"}
	k2 := S3KeyEntry{ID: "FRYAAAAAAAAAAAAAAAA2", Secret: sealedA}
	for _, k := range []S3KeyEntry{k1, k2} {
		if err := AddS3Key(ctx, src, "alice", k); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	for _, keep := range []string{"# Ferry users. Keep this comment.", "# Alice runs the nightly export.", "# Bob only reads.",
		`s3_keys:
      - id: "FRYAAAAAAAAAAAAAAAA1"
        secret: "` + sealedA + `"
        created: "2026-12-06T10:00:00Z"
      - id: "FRYAAAAAAAAAAAAAAAA2"`} {
		if !strings.Contains(string(data), keep) {
			t.Errorf("file lacks %q:\n%s", keep, data)
		}
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u, k, ok := s.LookupS3Key(k2.ID); !ok || u.Name != "alice" || k.Sealed != sealedA {
		t.Errorf("lookup %s: %v %+v %v", k2.ID, u, k, ok)
	}
	if _, _, ok := s.LookupS3Key("FRYNOSUCHKEY00000000"); ok {
		t.Error("an unknown key was found")
	}
	for _, c := range []struct {
		name string
		err  error
		fn   func() error
	}{
		{"add to nobody", ErrNoUser, func() error { return AddS3Key(ctx, src, "carol", k1) }},
		{"delete a key bob lacks", ErrNoS3Key, func() error { return DeleteS3Key(ctx, src, "bob", k1.ID) }},
		{"the same key to bob", nil, func() error { return AddS3Key(ctx, src, "bob", k1) }},
	} {
		err := c.fn()
		if err == nil || c.err != nil && !errors.Is(err, c.err) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if err := DeleteS3Key(ctx, src, "alice", k1.ID); err != nil {
		t.Fatal(err)
	}
	if err := DeleteS3Key(ctx, src, "alice", k2.ID); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if strings.Contains(string(data), "s3_keys") || !strings.Contains(string(data), "# Alice runs the nightly export.\n  - name: \"alice\"") ||
		!strings.HasSuffix(string(data), "  # Bob only reads.\n  - name: bob\n    password_hash: \""+h+"\"\n    home: incoming/bob/\n    permissions: [list, download]\n") {
		t.Errorf("after deleting both keys:\n%s", data)
	}

	for _, bad := range []struct{ name, yaml, want string }{
		{"plain secret", "users:\n  - name: a\n    home: a/\n    permissions: [list]\n    s3_keys: [{id: FRYAAAAAAAAAAAAAAAA1, secret: wJalrXUtnFEMI}]\n",
			"s3_keys[0].secret: not a sealed secret"},
		{"bad id", "users:\n  - name: a\n    home: a/\n    permissions: [list]\n    s3_keys: [{id: key-1, secret: \"" + sealedA + "\"}]\n",
			"s3_keys[0].id"},
		{"key used twice", "users:\n  - name: a\n    home: a/\n    permissions: [list]\n    s3_keys: [{id: FRYAAAAAAAAAAAAAAAA1, secret: \"" + sealedA + "\"}]\n" +
			"  - name: b\n    home: b/\n    permissions: [list]\n    s3_keys: [{id: FRYAAAAAAAAAAAAAAAA1, secret: \"" + sealedA + "\"}]\n",
			"access key FRYAAAAAAAAAAAAAAAA1 is already a's"},
	} {
		_, _, err := Parse("users.yaml", []byte(bad.yaml))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want %q", bad.name, err, bad.want)
		}
	}
	// A user with S3 keys only (an S3-native partner) needs no password nor SSH key.
	if _, _, err := Parse("users.yaml", []byte("users:\n  - name: p\n    home: p/\n    permissions: [upload]\n    s3_keys: [{id: FRYAAAAAAAAAAAAAAAA1, secret: \""+sealedA+"\"}]\n")); err != nil {
		t.Errorf("S3-only user: %v", err)
	}
}
