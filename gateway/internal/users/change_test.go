package users

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

type sshKey = ssh.PublicKey

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRevoked(t *testing.T) {
	k1, _ := testKey(t, "1")
	k2, _ := testKey(t, "2")
	base := func() *User {
		return &User{Name: "u", PasswordHash: "h1", PublicKeys: []sshKey{k1}, Auth: AuthAny, Home: "u/",
			Permissions: Permissions{List: true, Upload: true}, Protocols: AllProtocols}
	}
	tests := []struct {
		name   string
		change func(u *User) *User
		want   string
	}{
		{"unchanged", func(u *User) *User { return u }, ""},
		{"permissions", func(u *User) *User { u.Permissions = Permissions{List: true}; return u }, ""},
		{"protocols (the session checks its own)", func(u *User) *User { u.Protocols = Protocols{SFTP: true}; return u }, ""},
		{"addresses (the session checks its own)", func(u *User) *User { u.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}; return u }, ""},
		{"deleted", func(*User) *User { return nil }, "user deleted"},
		{"disabled", func(u *User) *User { u.Disabled = true; return u }, "user disabled"},
		{"password", func(u *User) *User { u.PasswordHash = "h2"; return u }, "password changed"},
		{"key replaced", func(u *User) *User { u.PublicKeys = []sshKey{k2}; return u }, "public keys changed"},
		{"key added", func(u *User) *User { u.PublicKeys = append(u.PublicKeys, k2); return u }, "public keys changed"},
		{"auth", func(u *User) *User { u.Auth = AuthBoth; return u }, "authentication changed"},
		{"home", func(u *User) *User { u.Home = "v/"; return u }, "home changed"},
		{"bucket", func(u *User) *User { u.Bucket = "other"; return u }, "home changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Revoked(base(), tt.change(base())); got != tt.want {
				t.Errorf("Revoked = %q, want %q", got, tt.want)
			}
		})
	}
}

// A reload tells the subscribers which users it added, removed or edited, after the new users
// are in force; a reload that changes nothing tells nobody.
func TestSubscribe(t *testing.T) {
	_, line := testKey(t, "alice")
	p := storeFile(t, line)
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls [][]string
	var seenDisabled bool
	cancel := s.Subscribe(func(changed []string) {
		calls = append(calls, changed)
		if u, ok := s.Lookup("alice"); ok && u.Disabled {
			seenDisabled = true
		}
	})
	orig := readFile(t, p)
	edited := strings.Replace(orig, "    home: alice/\n", "    home: alice/\n    disabled: true\n", 1)
	edited = strings.Replace(edited, "    home: office/\n    permissions: [list]\n", "    home: office/\n    permissions: [list, download]\n", 1)
	edited = strings.Replace(edited, "  - name: keyonly\n", "  - name: carol\n", 1)
	for _, step := range []struct {
		content string
		want    []string
	}{
		{orig, nil}, // same content
		{edited, []string{"alice", "office", "carol", "keyonly"}},
		{edited + "# a comment\n", nil}, // new text, same users
	} {
		calls = nil
		writeFile(t, p, step.content)
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range calls {
			got = append(got, c...)
		}
		if !slices.Equal(got, step.want) {
			t.Errorf("changed %q, want %q", got, step.want)
		}
	}
	if !seenDisabled {
		t.Error("the subscriber ran before the new users were in force")
	}
	cancel()
	calls = nil
	writeFile(t, p, orig)
	if err := s.Reload(); err != nil || calls != nil {
		t.Errorf("called after cancel: %q, %v", calls, err)
	}
}
