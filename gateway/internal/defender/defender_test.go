package defender

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/users"
)

var (
	attacker = netip.MustParseAddr("192.0.2.66")
	user     = netip.MustParseAddr("198.51.100.7")
)

// fakeStore refuses every password but "right" and counts the checks it makes.
type fakeStore struct {
	mu     sync.Mutex
	checks int
	block  chan struct{} // when set, each check waits for a receive... a send on it
}

func (f *fakeStore) CheckPassword(ctx context.Context, name, password string, _ netip.Addr) (*users.User, error) {
	f.mu.Lock()
	f.checks++
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if password != "right" {
		return nil, users.ErrAuth
	}
	return &users.User{Name: name}, nil
}

func (f *fakeStore) CheckPublicKey(context.Context, string, ssh.PublicKey, netip.Addr) (*users.User, error) {
	return nil, users.ErrAuth
}

func (f *fakeStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checks
}

func newDefender(t *testing.T, cfg Config) (*Defender, *[]Ban) {
	t.Helper()
	var bans []Ban
	var mu sync.Mutex
	cfg.OnBan = func(b Ban) { mu.Lock(); bans = append(bans, b); mu.Unlock() }
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, &bans
}

func fail(t *testing.T, a *Auth, from netip.Addr) error {
	t.Helper()
	u, err := a.CheckPassword(context.Background(), "alice", "guess", from)
	if err == nil || u != nil || !errors.Is(err, users.ErrAuth) {
		t.Fatalf("wrong password: %v, %v", u, err)
	}
	return err
}

// Threshold 20, 4 points per refused password: the fifth is the one that bans, and from then on
// no password reaches the store until the ban ends; the user from another address is never
// refused.
func TestBanAfterThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, bans := newDefender(t, Config{LoginFailedScore: DefaultLoginFailedScore, NoLoginScore: DefaultNoLoginScore})
		store := &fakeStore{}
		a := d.Auth(store, "sftp")
		for i := 1; i <= 5; i++ {
			fail(t, a, attacker)
			if banned := d.Banned(attacker); banned != (i == 5) {
				t.Fatalf("after %d failures banned = %v", i, banned)
			}
		}
		if len(*bans) != 1 {
			t.Fatalf("bans %+v", *bans)
		}
		b := (*bans)[0]
		if b.Addr != "192.0.2.66" || b.Protocol != "sftp" || b.User != "alice" || b.Score != 20 || b.Count != 1 ||
			!b.Until.Equal(time.Now().Add(DefaultBanTime)) || !strings.Contains(b.Reason, "score 20") {
			t.Errorf("ban %+v", b)
		}
		before := store.count()
		for range 100 {
			if err := fail(t, a, attacker); !strings.Contains(err.Error(), "banned") {
				t.Fatalf("banned refusal: %v", err)
			}
		}
		if store.count() != before {
			t.Errorf("%d passwords checked during the ban", store.count()-before)
		}
		if _, err := a.CheckPassword(context.Background(), "alice", "right", user); err != nil {
			t.Errorf("the real user: %v", err)
		}
		if _, err := d.Admit(attacker, "ftp", nil); !errors.Is(err, ErrBanned) {
			t.Errorf("banned address admitted: %v", err)
		}
		time.Sleep(DefaultBanTime - time.Second)
		if !d.Banned(attacker) {
			t.Fatal("ban ended early")
		}
		time.Sleep(time.Second)
		if d.Banned(attacker) {
			t.Fatal("ban did not end")
		}
		if _, err := a.CheckPassword(context.Background(), "alice", "right", attacker); err != nil {
			t.Errorf("after the ban: %v", err)
		}
	})
}

// The score counts within a sliding window: failures spread thinner than the threshold per
// window never ban.
func TestWindowSlides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, bans := newDefender(t, Config{Threshold: 20, Window: 10 * time.Minute, LoginFailedScore: 4})
		a := d.Auth(&fakeStore{}, "ftp")
		for range 50 { // 4 failures per 10 minutes, for hours
			fail(t, a, attacker)
			time.Sleep(150 * time.Second)
		}
		if len(*bans) != 0 || d.Banned(attacker) {
			t.Fatalf("banned: %+v", *bans)
		}
		for range 5 { // then five in a row
			fail(t, a, attacker)
		}
		if !d.Banned(attacker) {
			t.Fatal("not banned")
		}
	})
}

// Each ban remembered doubles the next, up to the maximum; a ban is forgotten MaxBanTime after
// it ended.
func TestBanTimeGrows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, bans := newDefender(t, Config{Threshold: 4, LoginFailedScore: 4, BanTime: 10 * time.Minute, MaxBanTime: 2 * time.Hour})
		a := d.Auth(&fakeStore{}, "sftp")
		var got []time.Duration
		for range 6 {
			fail(t, a, attacker)
			b := (*bans)[len(*bans)-1]
			got = append(got, time.Until(b.Until))
			time.Sleep(time.Until(b.Until)) // the ban ends; the attacker comes back at once
		}
		want := []time.Duration{10 * time.Minute, 20 * time.Minute, 40 * time.Minute, 80 * time.Minute, 2 * time.Hour, 2 * time.Hour}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("ban lengths %v, want %v", got, want)
			}
		}
		if c := (*bans)[5].Count; c != 6 {
			t.Errorf("count %d", c)
		}
		time.Sleep(2*time.Hour + time.Second) // a quiet MaxBanTime: forgiven
		fail(t, a, attacker)
		if b := (*bans)[len(*bans)-1]; time.Until(b.Until) != 10*time.Minute || b.Count != 1 {
			t.Errorf("after a quiet period: %s, count %d", time.Until(b.Until), b.Count)
		}
	})
}

// A connection that ends without logging in scores NoLoginScore, unless it logged in, had a
// password refused (already scored) or was closed by a ban.
func TestNoLoginScore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _ := newDefender(t, Config{Threshold: 5, NoLoginScore: 1, LoginFailedScore: 2})
		a := d.Auth(&fakeStore{}, "ftp")
		for range 3 { // logged in: no score
			tk, err := d.Admit(attacker, "ftp", nil)
			if err != nil {
				t.Fatal(err)
			}
			tk.LoggedIn()
			tk.Close()
		}
		// A refused password (2) then the end of that connection (nothing more).
		tk, _ := d.Admit(attacker, "ftp", nil)
		if _, err := a.CheckPassword(WithTicket(context.Background(), tk), "x", "y", attacker); err == nil {
			t.Fatal("accepted")
		}
		tk.Close()
		tk.Close() // idempotent
		// Two silent connections (1 each): 4 in all, not banned.
		for range 2 {
			tk, _ := d.Admit(attacker, "sftp", nil)
			tk.Close()
		}
		if d.Banned(attacker) {
			t.Fatal("banned at 4")
		}
		tk, _ = d.Admit(attacker, "sftp", nil)
		tk.Close()
		if !d.Banned(attacker) {
			t.Fatal("not banned at 5")
		}
	})
}

// A ban closes the address's connections that have not logged in (not the logged-in ones), and
// their end adds nothing.
func TestBanClosesConnectionsNotLoggedIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		d, bans := newDefender(t, Config{Threshold: 8, LoginFailedScore: 4, Registerer: reg})
		closed := map[int]bool{}
		var tickets []*Ticket
		for i := range 4 {
			tk, err := d.Admit(attacker, "sftp", func() { closed[i] = true })
			if err != nil {
				t.Fatal(err)
			}
			tickets = append(tickets, tk)
		}
		tickets[0].LoggedIn()
		a := d.Auth(&fakeStore{}, "sftp")
		ctx := WithTicket(context.Background(), tickets[1])
		for range 2 {
			if _, err := a.CheckPassword(ctx, "root", "toor", attacker); err == nil {
				t.Fatal("accepted")
			}
		}
		if len(*bans) != 1 || closed[0] || !closed[1] || !closed[2] || !closed[3] {
			t.Fatalf("bans %d, closed %v", len(*bans), closed)
		}
		if got := testutil.ToFloat64(d.m.bans.WithLabelValues("sftp")); got != 1 {
			t.Errorf("bans_total %v", got)
		}
		for _, tk := range tickets {
			tk.Close()
		}
		if len(*bans) != 1 {
			t.Errorf("closing added a ban")
		}
		if got := testutil.ToFloat64(d.m.score.WithLabelValues("sftp", "no_login")); got != 0 {
			t.Errorf("no_login score %v after a ban", got)
		}
		if n, err := testutil.GatherAndCount(reg, "ferry_defender_banned_addresses", "ferry_connections_unauthenticated"); err != nil || n != 2 {
			t.Errorf("gauges: %d, %v", n, err)
		}
		if b, tracked := d.counts(); b != 1 || tracked != 1 || d.unauthenticated() != 0 {
			t.Errorf("banned %d tracked %d unauthenticated %d", b, tracked, d.unauthenticated())
		}
	})
}

func TestAdmitLimits(t *testing.T) {
	d, _ := newDefender(t, Config{MaxPerIP: 4, MaxUnauthenticatedPerIP: 2, MaxUnauthenticated: 3,
		Safelist: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	admit := func(a netip.Addr) (*Ticket, error) { return d.Admit(a, "sftp", nil) }
	a1, _ := admit(attacker)
	a2, _ := admit(attacker)
	if _, err := admit(attacker); !errors.Is(err, ErrTooManyUnauthenticatedOne) {
		t.Fatalf("third not logged in from one address: %v", err)
	}
	a1.LoggedIn()
	a2.LoggedIn()
	a3, _ := admit(attacker)
	a4, err := admit(attacker)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admit(attacker); !errors.Is(err, ErrTooManyFromAddress) {
		t.Fatalf("fifth from one address: %v", err)
	}
	u1, err := admit(user)
	if err != nil {
		t.Fatal(err)
	}
	// 3 not logged in (a3, a4, u1): the global limit refuses even another address...
	if _, err := admit(netip.MustParseAddr("203.0.113.9")); !errors.Is(err, ErrTooManyUnauthenticated) {
		t.Fatalf("global limit: %v", err)
	}
	// ...and the safelist too: it lifts only the per-address limits.
	if _, err := admit(netip.MustParseAddr("10.1.2.3")); !errors.Is(err, ErrTooManyUnauthenticated) {
		t.Fatalf("safelisted, global limit: %v", err)
	}
	u1.Close()
	a3.Close()
	a4.LoggedIn()
	for range 3 { // safelisted: no per-address limit
		if _, err := admit(netip.MustParseAddr("10.1.2.3")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admit(user); !errors.Is(err, ErrTooManyUnauthenticated) {
		t.Fatalf("global limit again: %v", err)
	}
	for _, err := range []error{ErrBanned, ErrTooManyFromAddress, ErrTooManyUnauthenticatedOne, ErrTooManyUnauthenticated} {
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%v does not wrap ErrRefused", err)
		}
	}
}

// An IPv6 client is judged by its /64, an IPv4-mapped address as IPv4.
func TestAddressKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _ := newDefender(t, Config{Threshold: 8, LoginFailedScore: 4})
		a := d.Auth(&fakeStore{}, "ftp")
		fail(t, a, netip.MustParseAddr("2001:db8:1:2::1"))
		fail(t, a, netip.MustParseAddr("2001:db8:1:2:ffff::9"))
		if !d.Banned(netip.MustParseAddr("2001:db8:1:2:abcd::1")) || d.Banned(netip.MustParseAddr("2001:db8:1:3::1")) {
			t.Error("IPv6 not judged by /64")
		}
		fail(t, a, netip.MustParseAddr("::ffff:192.0.2.1"))
		fail(t, a, netip.MustParseAddr("192.0.2.1"))
		if !d.Banned(netip.MustParseAddr("192.0.2.1")) || d.Banned(netip.MustParseAddr("192.0.2.2")) {
			t.Error("IPv4 not judged by address")
		}
	})
}

// Safelisted addresses are never scored nor banned.
func TestSafelist(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, bans := newDefender(t, Config{Threshold: 4, LoginFailedScore: 4, Safelist: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
		a := d.Auth(&fakeStore{}, "sftp")
		for range 20 {
			fail(t, a, attacker)
		}
		if len(*bans) != 0 || d.Banned(attacker) {
			t.Errorf("safelisted address banned")
		}
	})
}

// One password check at a time per address: a second guess from the attacker waits while the
// user's check from another address goes ahead; a guess that waited past a ban is refused
// without a check.
func TestOneCheckPerAddress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _ := newDefender(t, Config{Threshold: 4, LoginFailedScore: 4})
		store := &fakeStore{block: make(chan struct{})}
		a := d.Auth(store, "sftp")
		results := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := a.CheckPassword(context.Background(), "root", "guess", attacker)
				results <- err
			}()
		}
		synctest.Wait()
		if n := store.count(); n != 1 {
			t.Fatalf("%d checks in progress from one address", n)
		}
		userDone := make(chan error, 1)
		go func() {
			_, err := a.CheckPassword(context.Background(), "alice", "right", user)
			userDone <- err
		}()
		synctest.Wait()
		if n := store.count(); n != 2 {
			t.Fatalf("the user's check waits behind the attacker's: %d checks", n)
		}
		store.block <- struct{}{} // one of them ends; if it was the attacker's, the ban begins
		store.block <- struct{}{}
		synctest.Wait()
		if err := <-userDone; err != nil {
			t.Fatalf("user: %v", err)
		}
		for range 3 {
			if err := <-results; err == nil {
				t.Fatal("guess accepted")
			}
		}
		if n := store.count(); n != 2 {
			t.Errorf("%d checks: the guesses that waited were checked after the ban", n)
		}
		// A waiting check gives up with its context.
		d2, _ := newDefender(t, Config{LoginFailedScore: 4})
		store2 := &fakeStore{block: make(chan struct{})}
		a2 := d2.Auth(store2, "ftp")
		go a2.CheckPassword(context.Background(), "x", "y", attacker) //nolint:errcheck
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := a2.CheckPassword(ctx, "x", "y", attacker); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("waiting check: %v", err)
		}
		close(store2.block)
	})
}

// Under an attack from more addresses than it may track, the Defender forgets addresses
// without a ban rather than grow.
func TestMaxTracked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _ := newDefender(t, Config{MaxTracked: 50, Threshold: 100, LoginFailedScore: 4})
		a := d.Auth(&fakeStore{}, "sftp")
		for i := range 1000 {
			fail(t, a, netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}))
		}
		if _, n := d.counts(); n > 50 {
			t.Errorf("%d addresses tracked", n)
		}
		time.Sleep(DefaultWindow + time.Minute)
		d.Banned(attacker) // any call sweeps
		if _, err := d.Admit(attacker, "ftp", nil); err != nil {
			t.Fatal(err)
		}
		if _, n := d.counts(); n != 1 {
			t.Errorf("%d addresses tracked after the window", n)
		}
	})
}

func TestConfig(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _ := newDefender(t, Config{Threshold: 1, LoginFailedScore: 0, NoLoginScore: 1})
		fail(t, d.Auth(&fakeStore{}, "ftp"), attacker) // scored 0: does not count
		if d.Banned(attacker) {
			t.Error("an offence scored 0 counted")
		}
	})
	if _, err := New(Config{BanTime: time.Hour, MaxBanTime: time.Minute}); err == nil {
		t.Error("max ban time below ban time accepted")
	}
	if _, err := New(Config{MaxPerIP: -1}); err == nil {
		t.Error("negative limit accepted")
	}
	d, _ := New(Config{Disabled: true, Threshold: 1, LoginFailedScore: 1})
	a := d.Auth(&fakeStore{}, "ftp")
	for range 10 {
		fail(t, a, attacker)
	}
	if d.Banned(attacker) {
		t.Error("disabled defender banned")
	}
}
