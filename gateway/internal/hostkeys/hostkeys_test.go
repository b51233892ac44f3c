package hostkeys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func fingerprints(ss []ssh.Signer) []string {
	var out []string
	for _, s := range ss {
		out = append(out, ssh.FingerprintSHA256(s.PublicKey()))
	}
	return out
}

func TestGenerateThenReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys") // does not exist yet: Load creates it 0700
	cfg := Config{Generate: true, Paths: []string{
		filepath.Join(dir, "ssh_host_ed25519_key"),
		filepath.Join(dir, "ssh_host_ecdsa_key"),
		filepath.Join(dir, "ssh_host_rsa_key"),
	}}
	first, err := Load(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSA}
	for i, s := range first {
		if got := s.PublicKey().Type(); got != wantTypes[i] {
			t.Errorf("key %d type %s, want %s", i, got, wantTypes[i])
		}
	}
	if rsaKey, ok := first[2].PublicKey().(ssh.CryptoPublicKey); ok {
		if k, ok := rsaKey.CryptoPublicKey().(interface{ Size() int }); ok && k.Size()*8 != 3072 {
			t.Errorf("rsa size %d bits", k.Size()*8)
		}
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v %v", st.Mode(), err)
	}
	for _, p := range cfg.Paths {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v %v", p, st.Mode(), err)
		}
	}
	// A restart (even with Generate still on) must present the same identity.
	second, err := Load(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := strings.Join(fingerprints(first), ","), strings.Join(fingerprints(second), ","); a != b {
		t.Fatalf("fingerprints changed on reload:\n%s\n%s", a, b)
	}
}

func TestPEMText(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a_ed25519")
	b := filepath.Join(dir, "b_ecdsa")
	gen, err := Load(Config{Generate: true, Paths: []string{a, b}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := os.ReadFile(a)
	pb, _ := os.ReadFile(b)
	got, err := Load(Config{PEM: "\n" + string(pa) + "\n" + string(pb)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if x, y := strings.Join(fingerprints(gen), ","), strings.Join(fingerprints(got), ","); x != y {
		t.Fatalf("PEM keys differ from files:\n%s\n%s", x, y)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad_ed25519")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad file names the file", Config{Paths: []string{bad}, Generate: true}, bad},
		{"missing without generate", Config{Paths: []string{filepath.Join(dir, "missing_rsa")}}, "missing_rsa"},
		{"unknown type to generate", Config{Paths: []string{filepath.Join(dir, "hostkey")}, Generate: true}, "key type"},
		{"bad PEM text", Config{PEM: "garbage"}, "not PEM"},
		{"bad PEM block", Config{PEM: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"}, "key 1"},
		{"nothing configured", Config{}, "none configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
