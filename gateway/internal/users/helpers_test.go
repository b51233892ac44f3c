package users

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

// testHash returns a bcrypt hash of password at cost (memoised: bcrypt is slow on purpose).
var hashes sync.Map

func testHash(t testing.TB, password string, cost int) string {
	t.Helper()
	key := password + "\x00" + string(rune('0'+cost))
	if h, ok := hashes.Load(key); ok {
		return h.(string)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	hashes.Store(key, string(h))
	return string(h)
}

// testKey returns a new SSH key: its public key and authorized_keys line.
func testKey(t testing.TB, comment string) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tempPath(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }
