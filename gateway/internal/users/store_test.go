package users

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const cost = 10 // the minimum recommended cost: realistic and quick enough for tests

func storeFile(t *testing.T, aliceKey string) string {
	t.Helper()
	h := testHash(t, "right", cost)
	p := tempPath(t, "users.yaml")
	writeFile(t, p, `users:
  - name: alice
    password_hash: "`+h+`"
    public_keys: ["`+aliceKey+`"]
    home: alice/
    permissions: ["*"]
  - name: office
    password_hash: "`+h+`"
    home: office/
    permissions: [list]
    allowed_cidrs: [10.0.0.0/8]
  - name: gone
    password_hash: "`+h+`"
    public_keys: ["`+aliceKey+`"]
    home: gone/
    permissions: [list]
    disabled: true
  - name: keyonly
    public_keys: ["`+aliceKey+`"]
    home: k/
    permissions: [list]
`)
	return p
}

func TestCheckPassword(t *testing.T) {
	_, line := testKey(t, "alice")
	s, err := Open(storeFile(t, line), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	local, office := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.2.3.4")
	tests := []struct {
		user, pass string
		from       netip.Addr
		reason     string // "" = accepted
	}{
		{"alice", "right", local, ""},
		{"alice", "wrong", local, "wrong password"},
		{"alice", "", local, "wrong password"},
		{"nobody", "right", local, "unknown user"},
		{"office", "right", office, ""},
		{"office", "right", netip.MustParseAddr("::ffff:10.9.9.9"), ""},
		{"office", "right", local, "address not allowed"},
		{"gone", "right", local, "user disabled"},
		{"keyonly", "right", local, "user has no password"},
	}
	for _, tt := range tests {
		u, err := s.CheckPassword(ctx, tt.user, tt.pass, tt.from)
		if tt.reason == "" {
			if err != nil || u == nil || u.Name != tt.user {
				t.Errorf("%s/%s from %s: %v, %v", tt.user, tt.pass, tt.from, u, err)
			}
			continue
		}
		if u != nil || !errors.Is(err, ErrAuth) || !strings.HasSuffix(err.Error(), tt.reason) {
			t.Errorf("%s/%s from %s: got %v, %v; want ErrAuth (%s)", tt.user, tt.pass, tt.from, u, err, tt.reason)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	// A cancelled context is an error, but never a successful login.
	if u, err := s.CheckPassword(cctx, "alice", "right", local); err == nil && u == nil {
		t.Errorf("cancelled: %v %v", u, err)
	}
}

func TestCheckPublicKey(t *testing.T) {
	key, line := testKey(t, "alice")
	other, _ := testKey(t, "mallory")
	s, err := Open(storeFile(t, line), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	local := netip.MustParseAddr("127.0.0.1")
	for _, tt := range []struct {
		user   string
		key    ssh.PublicKey
		reason string
	}{
		{"alice", key, ""},
		{"keyonly", key, ""},
		{"alice", other, "key not authorized"},
		{"nobody", key, "unknown user"},
		{"office", key, "key not authorized"},
		{"gone", key, "user disabled"},
	} {
		u, err := s.CheckPublicKey(ctx, tt.user, tt.key, local)
		if tt.reason == "" {
			if err != nil || u == nil || u.Name != tt.user {
				t.Errorf("%s: %v %v", tt.user, u, err)
			}
			continue
		}
		if u != nil || !errors.Is(err, ErrAuth) || !strings.HasSuffix(err.Error(), tt.reason) {
			t.Errorf("%s: got %v %v, want ErrAuth (%s)", tt.user, u, err, tt.reason)
		}
	}
}

// Unknown users, disabled users, refused addresses and wrong passwords must take about as long
// as each other: otherwise timing tells an attacker which user names exist. Medians over a few
// tries, a generous factor: a sanity check that holds on a loaded 2-core machine, and fails by
// a factor of thousands if the dummy bcrypt comparison is removed.
func TestCheckPasswordTiming(t *testing.T) {
	_, line := testKey(t, "alice")
	s, err := Open(storeFile(t, line), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	local := netip.MustParseAddr("127.0.0.1")
	cases := []struct{ name, user string }{
		{"wrong password", "alice"}, {"unknown user", "no-such-user"}, {"disabled", "gone"},
		{"address refused", "office"}, {"no password", "keyonly"},
	}
	const tries = 7
	samples := make([][]time.Duration, len(cases))
	for range tries { // interleaved, so a burst of load hits every case alike
		for i, c := range cases {
			start := time.Now()
			_, err := s.CheckPassword(ctx, c.user, "guess", local)
			samples[i] = append(samples[i], time.Since(start))
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
	}
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	ref := median(samples[0])
	for i, c := range cases[1:] {
		m := median(samples[i+1])
		if m*4 < ref || m > ref*4 {
			t.Errorf("%s takes %v, wrong password %v: more than 4x apart", c.name, m, ref)
		}
	}
	t.Logf("wrong password median %v", ref)
}

func TestCommonCost(t *testing.T) {
	u := func(c int) *User { return &User{PasswordHash: testHash(t, "x", c)} }
	for _, tt := range []struct {
		users []*User
		want  int
	}{
		{nil, HashCost},
		{[]*User{{}}, HashCost},
		{[]*User{u(10), u(11), u(11)}, 11},
		{[]*User{u(10), u(11)}, 11},
		{[]*User{u(10), u(10), u(11)}, 10},
	} {
		if got := commonCost(tt.users); got != tt.want {
			t.Errorf("commonCost = %d, want %d", got, tt.want)
		}
	}
}

func TestReloadKeepsOldUsersOnBadFile(t *testing.T) {
	_, line := testKey(t, "alice")
	p := storeFile(t, line)
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := s.Lookup("alice")
	writeFile(t, p, "users:\n  - name: alice\n    home: x/\n    permissions: [list]\n    colour: blue\n")
	err = s.Reload()
	if err == nil || !strings.Contains(err.Error(), p+":5: users[0]: unknown key \"colour\"") {
		t.Fatalf("bad file: %v", err)
	}
	if got, ok := s.Lookup("alice"); !ok || got != alice || len(s.All()) != 4 {
		t.Errorf("previous users not kept")
	}
	writeFile(t, p, "users:\n  - name: carol\n    password_hash: \""+testHash(t, "c", cost)+"\"\n    home: c/\n    permissions: [list]\n")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup("alice"); ok {
		t.Error("alice still there")
	}
	if _, ok := s.Lookup("carol"); !ok {
		t.Error("carol missing")
	}
	// The session that logged in before keeps its User, unchanged.
	if alice.Name != "alice" || alice.Home != "alice/" {
		t.Errorf("old user changed: %+v", alice)
	}
	if _, err := s.CheckPassword(context.Background(), "carol", "c", netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("carol login: %v", err)
	}
}

func TestOpenRefusesBadFile(t *testing.T) {
	p := tempPath(t, "users.yaml")
	writeFile(t, p, "users:\n  - name: x\n")
	if _, err := Open(p, nil); err == nil || !strings.Contains(err.Error(), p+":2: users[0]: no credentials") {
		t.Errorf("got %v", err)
	}
	if _, err := Open(tempPath(t, "missing.yaml"), nil); err == nil {
		t.Error("missing file opened")
	}
}

// Logins go on while the file is reloaded; run with -race.
func TestConcurrentReloadAndLogin(t *testing.T) {
	_, line := testKey(t, "alice")
	p := storeFile(t, line)
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := s.CheckPassword(ctx, "alice", "right", netip.MustParseAddr("127.0.0.1")); err != nil {
					t.Error(err)
					return
				}
				_ = s.All()
			}
		}()
	}
	for range 10 {
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
}
