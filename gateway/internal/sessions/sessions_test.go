package sessions_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferrygw/ferry/gateway/internal/sessions"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

type account struct {
	name, hash, extra string
	perms             string
}

func writeUsers(t *testing.T, path string, accounts ...account) {
	t.Helper()
	var b strings.Builder
	b.WriteString("users:\n")
	for _, a := range accounts {
		fmt.Fprintf(&b, "  - name: %s\n    password_hash: %q\n    home: %s/\n    permissions: %s\n", a.name, a.hash, a.name, a.perms)
		if a.extra != "" {
			b.WriteString("    " + a.extra + "\n")
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func hash(t *testing.T, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// revocations records which sessions were revoked, and why.
type revocations struct {
	mu  sync.Mutex
	got map[string]string
}

func (r *revocations) fn(id string) func(string) {
	return func(reason string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, twice := r.got[id]; twice {
			reason += " (twice!)"
		}
		r.got[id] = reason
	}
}

func (r *revocations) take() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = map[string]string{}
	return got
}

// Every edit of the users file reaches the open sessions it concerns: permission changes
// revoke nothing, the rest revokes exactly the sessions it no longer admits.
func TestRevocation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	ha, hb, hc := hash(t, "a"), hash(t, "b"), hash(t, "c")
	alice := account{name: "alice", hash: ha, perms: `["*"]`}
	bob := account{name: "bob", hash: hb, perms: "[list]"}
	carol := account{name: "carol", hash: hc, perms: "[list]", extra: "allowed_cidrs: [10.0.0.0/8]"}
	writeUsers(t, path, alice, bob, carol)
	store, err := users.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := sessions.New(store.Lookup, nil, nil)
	store.Subscribe(reg.Changed)
	rev := &revocations{got: map[string]string{}}
	join := func(id, name, protocol, addr string) func() {
		u, ok := store.Lookup(name)
		if !ok {
			t.Fatalf("no %s", name)
		}
		return reg.Join(u, protocol, netip.MustParseAddr(addr), rev.fn(id))
	}
	join("alice-sftp", "alice", "sftp", "192.0.2.1")
	leaveFTP := join("alice-ftp", "alice", "ftps", "192.0.2.1")
	join("bob-sftp", "bob", "sftp", "192.0.2.2")
	join("bob-ftp", "bob", "ftp", "192.0.2.2")
	join("carol-near", "carol", "sftp", "10.1.1.1")
	join("carol-far", "carol", "sftp", "10.200.1.1")

	steps := []struct {
		name  string
		users []account
		leave func() // a session that ends before this step
		want  map[string]string
	}{
		{name: "permissions only", users: []account{{name: "alice", hash: ha, perms: "[list]"}, bob, carol}, want: map[string]string{}},
		{name: "protocols", users: []account{alice, {name: "bob", hash: hb, perms: "[list]", extra: "protocols: [ftp]"}, carol},
			want: map[string]string{"bob-sftp": "sftp no longer allowed"}},
		{name: "addresses", users: []account{alice, bob, {name: "carol", hash: hc, perms: "[list]", extra: "allowed_cidrs: [10.1.0.0/16]"}},
			want: map[string]string{"carol-far": "address no longer allowed"}},
		{name: "password", users: []account{alice, {name: "bob", hash: hash(t, "b2"), perms: "[list]"}, carol},
			want: map[string]string{"bob-ftp": "password changed"}},
		{name: "disabled, after alice's FTP session left", users: []account{{name: "alice", hash: ha, perms: `["*"]`, extra: "disabled: true"}, carol},
			leave: leaveFTP, want: map[string]string{"alice-sftp": "user disabled"}},
		{name: "deleted", users: []account{}, want: map[string]string{"carol-near": "user deleted"}},
	}
	for _, st := range steps {
		if st.leave != nil {
			st.leave()
		}
		writeUsers(t, path, st.users...)
		if err := store.Reload(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := rev.take(); fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Errorf("%s: revoked %v, want %v", st.name, got, st.want)
		}
	}
	if n := reg.Open("alice"); n != 1 { // a revoked session stays until its server leaves
		t.Errorf("alice has %d sessions", n)
	}
}

// A session that joins with an account revoked between its login and Join is revoked at once.
func TestJoinAfterRevocation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	h := hash(t, "a")
	writeUsers(t, path, account{name: "alice", hash: h, perms: "[list]"})
	store, err := users.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := sessions.New(store.Lookup, nil, nil)
	store.Subscribe(reg.Changed)
	u, _ := store.Lookup("alice")
	writeUsers(t, path, account{name: "alice", hash: h, perms: "[list]", extra: "disabled: true"})
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	rev := &revocations{got: map[string]string{}}
	leave := reg.Join(u, "sftp", netip.MustParseAddr("127.0.0.1"), rev.fn("late"))
	if got := rev.take(); got["late"] != "user disabled" {
		t.Errorf("revoked %v", got)
	}
	leave()
	if reg.Open("alice") != 0 {
		t.Error("leave kept the session")
	}
}

func TestRevokedMetric(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	writeUsers(t, path, account{name: "alice", hash: hash(t, "a"), perms: "[list]"})
	store, err := users.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	prom := prometheus.NewRegistry()
	reg := sessions.New(store.Lookup, nil, prom)
	store.Subscribe(reg.Changed)
	u, _ := store.Lookup("alice")
	reg.Join(u, "ftp", netip.MustParseAddr("127.0.0.1"), func(string) {})
	writeUsers(t, path)
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	want := `# HELP ferry_sessions_revoked_total Logged-in sessions closed because their user's account changed (disabled, deleted, credentials, home, protocols, addresses).
# TYPE ferry_sessions_revoked_total counter
ferry_sessions_revoked_total{protocol="ftp"} 1
`
	if err := testutil.GatherAndCompare(prom, strings.NewReader(want), "ferry_sessions_revoked_total"); err != nil {
		t.Error(err)
	}
}
