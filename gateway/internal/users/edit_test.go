package users

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEdits(t *testing.T) {
	h1 := testHash(t, "one", cost)
	h2 := testHash(t, "two", cost)
	_, key := testKey(t, "erin@laptop")
	erin := Entry{Name: "erin", PublicKeys: []string{key}, Home: "incoming/erin/", Permissions: []string{"list", "download"}}

	base := `# Ferry users. Keep this comment.
users:
  # Alice runs the nightly export.
  - name: alice
    password_hash: "` + h1 + `"   # rotated 2026-01
    home: alice/
    permissions: ["*"]

  # Bob only reads.
  - name: bob
    password_hash: '` + h1 + `'
    home: bob/
    permissions: [list, download]
# trailing comment
`
	tests := []struct {
		name   string
		before string // "" = no file
		edit   func(path string) error
		after  string // exact expected file; "" = only check validity via want
		err    error
		check  func(t *testing.T, users []*User)
	}{
		{
			name:   "add keeps comments and layout",
			before: base,
			edit:   func(p string) error { return Add(context.Background(), LocalFile(p), erin) },
			after: strings.Replace(base, "# trailing comment\n", `  - name: "erin"
    public_keys:
      - "`+key+`"
    home: "incoming/erin/"
    permissions: ["list", "download"]
# trailing comment
`, 1),
		},
		{
			name:   "add to unindented list",
			before: "users:\n- name: alice\n  password_hash: \"" + h1 + "\"\n  home: a/\n  permissions: [list]\n",
			edit:   func(p string) error { return Add(context.Background(), LocalFile(p), erin) },
			after: "users:\n- name: alice\n  password_hash: \"" + h1 + "\"\n  home: a/\n  permissions: [list]\n" +
				"- name: \"erin\"\n  public_keys:\n    - \"" + key + "\"\n  home: \"incoming/erin/\"\n  permissions: [\"list\", \"download\"]\n",
		},
		{
			name:   "add to empty users",
			before: "# nobody yet\nusers:\n",
			edit:   func(p string) error { return Add(context.Background(), LocalFile(p), erin) },
			after: "# nobody yet\nusers:\n  - name: \"erin\"\n    public_keys:\n      - \"" + key + "\"\n" +
				"    home: \"incoming/erin/\"\n    permissions: [\"list\", \"download\"]\n",
		},
		{
			name:  "add creates the file",
			edit:  func(p string) error { return Add(context.Background(), LocalFile(p), erin) },
			check: func(t *testing.T, u []*User) { wantNames(t, u, "erin") },
		},
		{
			name:   "add to flow style rewrites cleanly",
			before: "users: [{name: alice, password_hash: \"" + h1 + "\", home: a/, permissions: [list]}]\n",
			edit:   func(p string) error { return Add(context.Background(), LocalFile(p), erin) },
			check:  func(t *testing.T, u []*User) { wantNames(t, u, "alice", "erin") },
		},
		{
			name:   "add twice",
			before: base,
			edit: func(p string) error {
				return Add(context.Background(), LocalFile(p), Entry{Name: "bob", PasswordHash: h2, Home: "x/", Permissions: []string{"list"}})
			},
			err: ErrUserExists,
		},
		{
			name:   "add invalid entry",
			before: base,
			edit: func(p string) error {
				return Add(context.Background(), LocalFile(p), Entry{Name: "zed", Home: "../x", Permissions: []string{"list"}})
			},
			err: errAny,
		},
		{
			name:   "passwd replaces the hash, keeps the comment",
			before: base,
			edit:   func(p string) error { return SetPassword(context.Background(), LocalFile(p), "alice", h2) },
			after:  strings.Replace(base, `password_hash: "`+h1+`"   # rotated 2026-01`, `password_hash: "`+h2+`" # rotated 2026-01`, 1),
		},
		{
			name:   "passwd on single-quoted hash",
			before: base,
			edit:   func(p string) error { return SetPassword(context.Background(), LocalFile(p), "bob", h2) },
			after:  strings.Replace(base, `password_hash: '`+h1+`'`, `password_hash: "`+h2+`"`, 1),
		},
		{
			name:   "passwd adds a missing hash after the name",
			before: "users:\n  - name: erin\n    public_keys: [\"" + key + "\"]\n    home: e/\n    permissions: [list]\n",
			edit:   func(p string) error { return SetPassword(context.Background(), LocalFile(p), "erin", h2) },
			after:  "users:\n  - name: erin\n    password_hash: \"" + h2 + "\"\n    public_keys: [\"" + key + "\"]\n    home: e/\n    permissions: [list]\n",
		},
		{
			name:   "passwd unknown user",
			before: base,
			edit:   func(p string) error { return SetPassword(context.Background(), LocalFile(p), "nobody", h2) },
			err:    ErrNoUser,
		},
		{
			name:   "delete takes the entry's own comment",
			before: base,
			edit:   func(p string) error { return Delete(context.Background(), LocalFile(p), "alice") },
			after: `# Ferry users. Keep this comment.
users:

  # Bob only reads.
  - name: bob
    password_hash: '` + h1 + `'
    home: bob/
    permissions: [list, download]
# trailing comment
`,
		},
		{
			name:   "delete the last entry",
			before: base,
			edit:   func(p string) error { return Delete(context.Background(), LocalFile(p), "bob") },
			after: `# Ferry users. Keep this comment.
users:
  # Alice runs the nightly export.
  - name: alice
    password_hash: "` + h1 + `"   # rotated 2026-01
    home: alice/
    permissions: ["*"]

# trailing comment
`,
		},
		{
			name:   "delete everyone",
			before: "users:\n  - name: a\n    password_hash: \"" + h1 + "\"\n    home: a/\n    permissions: [list]\n",
			edit:   func(p string) error { return Delete(context.Background(), LocalFile(p), "a") },
			after:  "users:\n",
		},
		{
			name:   "delete unknown",
			before: base,
			edit:   func(p string) error { return Delete(context.Background(), LocalFile(p), "nobody") },
			err:    ErrNoUser,
		},
		{
			name:   "broken file is not edited",
			before: "users:\n  - name: a\n    colour: red\n",
			edit:   func(p string) error { return Delete(context.Background(), LocalFile(p), "a") },
			err:    errAny,
		},
		{
			name: "an edit that would leave the file invalid is refused",
			// carol is already broken (no home); adding erin must not write it out.
			before: "users:\n  - name: carol\n    password_hash: \"" + h1 + "\"\n    permissions: [list]\n",
			edit:   func(p string) error { return Add(context.Background(), LocalFile(p), erin) },
			err:    errAny,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "users.yaml")
			if tt.before != "" {
				writeFile(t, p, tt.before)
				if err := os.Chmod(p, 0o640); err != nil {
					t.Fatal(err)
				}
			}
			err := tt.edit(p)
			got, _ := os.ReadFile(p)
			if tt.err != nil {
				if err == nil || tt.err != errAny && !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if string(got) != tt.before {
					t.Errorf("file changed by a refused edit:\n%s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.after != "" && string(got) != tt.after {
				t.Errorf("file after edit:\n%s\nwant:\n%s", got, tt.after)
			}
			users, _, err := Load(p)
			if err != nil {
				t.Fatalf("result does not load: %v", err)
			}
			if tt.check != nil {
				tt.check(t, users)
			}
			info, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			wantMode := os.FileMode(0o640)
			if tt.before == "" {
				wantMode = 0o600
			}
			if info.Mode().Perm() != wantMode {
				t.Errorf("mode %v, want %v", info.Mode().Perm(), wantMode)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("left-over files: %v", entries)
			}
		})
	}
}

var errAny = errors.New("any error")

func wantNames(t *testing.T, users []*User, names ...string) {
	t.Helper()
	var got []string
	for _, u := range users {
		got = append(got, u.Name)
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("users %v, want %v", got, names)
	}
}

// The spliced password is the one that logs in.
func TestSetPasswordThenLogin(t *testing.T) {
	p := tempPath(t, "users.yaml")
	writeFile(t, p, "users:\n  - name: a\n    password_hash: \""+testHash(t, "old", cost)+"\"\n    home: a/\n    permissions: [list]\n")
	if err := SetPassword(context.Background(), LocalFile(p), "a", testHash(t, "new", cost)); err != nil {
		t.Fatal(err)
	}
	users, _, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if users[0].PasswordHash != testHash(t, "new", cost) {
		t.Error("hash not replaced")
	}
}

// A local file changed between an edit's read and its write is not overwritten, and no
// temporary file is left behind.
func TestLocalEditConflict(t *testing.T) {
	p := tempPath(t, "users.yaml")
	writeFile(t, p, userFile(t, "alice"))
	src := LocalFile(p)
	read, err := src.read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, userFile(t, "alice", "bob")) // another admin's edit
	if err := src.write(context.Background(), []byte("users: []\n"), read); !errors.Is(err, ErrConflict) {
		t.Fatalf("write over a changed file = %v, want ErrConflict", err)
	}
	if got, _ := os.ReadFile(p); string(got) != userFile(t, "alice", "bob") {
		t.Errorf("the other edit was overwritten:\n%s", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Errorf("left-over files: %v", entries)
	}
	// Creating a file someone else created meanwhile conflicts too.
	q := tempPath(t, "new.yaml")
	writeFile(t, q, userFile(t, "carol"))
	if err := LocalFile(q).write(context.Background(), []byte("users: []\n"), content{}); !errors.Is(err, ErrConflict) {
		t.Errorf("create over an existing file = %v, want ErrConflict", err)
	}
}
