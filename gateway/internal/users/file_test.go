package users

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	hash := testHash(t, "secret", 10)
	key, line := testKey(t, "alice@laptop")
	src := `# users
users:
  - name: alice
    password_hash: "` + hash + `"
    public_keys: ["` + line + `"]
    auth: both
    bucket: other-bucket
    home: incoming/alice
    permissions: [list, download, upload]
    allowed_cidrs: [10.1.2.3/8, 192.0.2.7, "::ffff:192.0.2.8"]
    protocols: [sftp]
  - name: bob.smith@example
    public_keys:
      - ` + line + `
    home: ""
    permissions: ["*"]
    disabled: true
`
	users, warnings, err := Parse("u.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if len(users) != 2 {
		t.Fatalf("%d users", len(users))
	}
	a := users[0]
	want := &User{
		Name: "alice", PasswordHash: hash, PublicKeys: a.PublicKeys, Auth: AuthBoth, Bucket: "other-bucket",
		Home: "incoming/alice/", Permissions: Permissions{List: true, Download: true, Upload: true},
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("192.0.2.8/32")},
		Protocols:    Protocols{SFTP: true},
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("alice = %+v\nwant    %+v", a, want)
	}
	if len(a.PublicKeys) != 1 || string(a.PublicKeys[0].Marshal()) != string(key.Marshal()) {
		t.Errorf("alice's key not parsed")
	}
	b := users[1]
	if b.Auth != AuthAny || b.Home != "" || !b.Disabled || b.Permissions.ReadOnly() || !b.Permissions.Mkdir || b.Protocols != AllProtocols {
		t.Errorf("bob = %+v", b)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, keyLine := testKey(t, "k")
	src := `users:
  - name: ok
    password_hash: "not-bcrypt"
    home: a/
    permissions: [list, dowload]
  - name: "bad name"
    public_keys: ["ssh-ed25519 garbage"]
    home: /abs
    permissions: []
  - name: nocreds
    home: x/../y
    permissions: [list]
    allowed_cidrs: [10.0.0.0/33]
  - name: both
    public_keys: ["` + keyLine + `"]
    auth: both
    bucket: Bad_Bucket
    permissions: [list]
  - name: ok
    pasword_hash: x
    public_keys: ['from="10.0.0.0/8" ` + keyLine + `']
    home: a
    permissions: [list]
    auth: sometimes
`
	_, _, err := Parse("u.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	// The typo'd key stops decoding, so it is reported alone: fix it, then the rest appears.
	if got := err.Error(); got != `u.yaml:20: users[4]: unknown key "pasword_hash" (did you mean "password_hash"?)` {
		t.Fatalf("decode problem: %v", got)
	}
	src = strings.Replace(src, "pasword_hash: x", "disabled: false", 1)
	_, _, err = Parse("u.yaml", []byte(src))
	want := []string{
		`u.yaml:3: users[0].password_hash: not a bcrypt hash`,
		`u.yaml:5: users[0].permissions: unknown permission "dowload"`,
		`u.yaml:6: users[1].name: "bad name": names hold letters`,
		`u.yaml:7: users[1].public_keys[0]: not an SSH public key`,
		`u.yaml:8: users[1].home: "/abs" must not start with "/"`,
		`u.yaml:10: users[2]: no credentials`,
		`u.yaml:11: users[2].home: "x/../y" has an empty, "." or ".." segment`,
		`u.yaml:13: users[2].allowed_cidrs[0]: "10.0.0.0/33" is not an address or CIDR`,
		`u.yaml:14: users[3]: home is required`,
		`u.yaml:16: users[3].auth: auth: both needs password_hash and public_keys`,
		`u.yaml:17: users[3].bucket: bucket name "Bad_Bucket"`,
		`u.yaml:19: users[4].name: user "ok" is already defined at line 2`,
		`u.yaml:21: users[4].public_keys[0]: key options (from="10.0.0.0/8") are not supported`,
		`u.yaml:24: users[4].auth: must be "any" or "both", got "sometimes"`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d:\n got %s\nwant %s...", i, got[i], want[i])
		}
	}
}

func TestParseWarnings(t *testing.T) {
	src := "users:\n  - name: weak\n    password_hash: \"" + testHash(t, "x", 4) + "\"\n    home: a/\n    permissions: []\n"
	users, warnings, err := Parse("u.yaml", []byte(src))
	if err != nil || len(users) != 1 {
		t.Fatal(users, err)
	}
	if len(warnings) != 2 || !strings.HasPrefix(warnings[0], "u.yaml:3: users[0].password_hash: bcrypt cost 4 is weak") ||
		!strings.HasPrefix(warnings[1], "u.yaml:5: users[0].permissions: empty") {
		t.Errorf("warnings: %q", warnings)
	}
	_, warnings, err = Parse("u.yaml", []byte("users: []\n"))
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "no users") {
		t.Errorf("empty file: %q %v", warnings, err)
	}
}

func TestNormalizeHome(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{"", "", ""},
		{"a", "a/", ""},
		{"a/b/", "a/b/", ""},
		{"incoming/alice", "incoming/alice/", ""},
		{"/a", "", "must not start"},
		{"a//b", "", "segment"},
		{"a/./b", "", "segment"},
		{"..", "", "segment"},
		{"a/..", "", "segment"},
		{"a\nb", "", "control"},
	} {
		got, err := NormalizeHome(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("NormalizeHome(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeHome(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestPermissions(t *testing.T) {
	all, err := ParsePermissions([]string{"*"})
	if err != nil || all.ReadOnly() || len(all.Names()) != 7 {
		t.Errorf("*: %+v %v", all, err)
	}
	ro, err := ParsePermissions([]string{"list", "download"})
	if err != nil || !ro.ReadOnly() || strings.Join(ro.Names(), ",") != "list,download" {
		t.Errorf("read-only: %+v %v", ro, err)
	}
	if _, err := ParsePermissions([]string{"list", "write"}); err == nil || !strings.Contains(err.Error(), `"write"`) {
		t.Errorf("unknown permission: %v", err)
	}
}

func TestEntryCheck(t *testing.T) {
	err := Entry{Name: "a b", Home: "/x", Permissions: []string{"nope"}}.Check()
	for _, want := range []string{"name: ", "home: ", "permissions: ", "no credentials"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %v, want it to mention %q", err, want)
		}
	}
	if err := (Entry{Name: "ok", PasswordHash: testHash(t, "p", 10), Home: "h", Permissions: []string{"*"}}).Check(); err != nil {
		t.Errorf("valid entry: %v", err)
	}
}
