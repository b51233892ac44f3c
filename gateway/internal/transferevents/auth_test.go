package transferevents

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/sftpd/sftptest"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/event"
)

func TestLoginFailed(t *testing.T) {
	const secret = "correct horse battery staple"
	key := sftptest.NewKey(t)
	alice := sftptest.NewUser(t, "alice", secret, key.PublicKey())
	other := sftptest.NewKey(t)
	remote := netip.MustParseAddr("192.0.2.7")
	ctx := t.Context()

	tests := []struct {
		name      string
		ctx       context.Context
		try       func(a *Auth, ctx context.Context) error
		wantEvent bool
		wantUser  string
		wantSess  string
		wantAddr  string
	}{
		{"good password", ctx, func(a *Auth, ctx context.Context) error {
			_, err := a.CheckPassword(ctx, "alice", secret, remote)
			return err
		}, false, "", "", ""},
		{"good key", ctx, func(a *Auth, ctx context.Context) error {
			_, err := a.CheckPublicKey(ctx, "alice", key.PublicKey(), remote)
			return err
		}, false, "", "", ""},
		{"wrong password", ctx, func(a *Auth, ctx context.Context) error {
			_, err := a.CheckPassword(ctx, "alice", secret+"x", remote)
			return err
		}, true, "alice", "", "192.0.2.7"},
		{"unknown user as typed", ctx, func(a *Auth, ctx context.Context) error {
			_, err := a.CheckPassword(ctx, "Mallory ", secret, remote)
			return err
		}, true, "Mallory ", "", "192.0.2.7"},
		{"wrong key (clients probe keys: not an event)", ctx, func(a *Auth, ctx context.Context) error {
			_, err := a.CheckPublicKey(ctx, "alice", other.PublicKey(), remote)
			return err
		}, false, "", "", ""},
		{"session from context", WithSession(ctx, Session{ID: "sess-9", ClientAddr: "192.0.2.7:5555"}), func(a *Auth, ctx context.Context) error {
			_, err := a.CheckPassword(ctx, "alice", "nope", remote)
			return err
		}, true, "alice", "sess-9", "192.0.2.7:5555"},
		{"login timed out", cancelled(ctx), func(a *Auth, ctx context.Context) error {
			_, err := a.CheckPassword(ctx, "alice", "nope", remote)
			return err
		}, false, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t)
			a := New(rec, Config{}).Auth(sftptest.NewAuth(alice), "sftp")
			err := tt.try(a, tt.ctx)
			refused := tt.wantEvent || strings.HasPrefix(tt.name, "wrong key") || tt.name == "login timed out"
			if refused != (err != nil) {
				t.Fatalf("auth error %v", err)
			}
			if !tt.wantEvent {
				if got := rec.events(); len(got) != 0 {
					t.Fatalf("events %+v", got)
				}
				return
			}
			ev := rec.waitN(t, 1)[0]
			d := ev.Detail
			if ev.DetailType != event.DetailTypeLoginFailed || d.User != tt.wantUser || d.Protocol != "sftp" ||
				d.ClientAddress != tt.wantAddr || d.FailureReason != FailureReason {
				t.Errorf("event %+v", ev)
			}
			if tt.wantSess != "" && d.SessionID != tt.wantSess || d.SessionID == "" {
				t.Errorf("session_id %q, want %q", d.SessionID, tt.wantSess)
			}
			raw, _ := json.Marshal(ev)
			if strings.Contains(string(raw), secret) || strings.Contains(string(raw), "nope") ||
				strings.Contains(string(raw), "$2a$") {
				t.Errorf("secret in event: %s", raw)
			}
		})
	}
}

func cancelled(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	return ctx
}

// TestLoginFailedPasswordOnly covers ftpd's authenticator, which has no public keys.
func TestLoginFailedPasswordOnly(t *testing.T) {
	rec := newRecorder(t)
	a := New(rec, Config{}).Auth(passwordOnly{sftptest.NewAuth()}, "ftp")
	if _, err := a.CheckPublicKey(t.Context(), "bob", sftptest.NewKey(t).PublicKey(), netip.MustParseAddr("::1")); err == nil {
		t.Fatal("public key accepted without a key checker")
	}
	if _, err := a.CheckPassword(t.Context(), "bob", "pw", netip.MustParseAddr("::1")); err == nil {
		t.Fatal("unknown user accepted")
	}
	for _, ev := range rec.waitN(t, 1) {
		if ev.Detail.Protocol != "ftp" || ev.Detail.User != "bob" || ev.Detail.ClientAddress != "::1" {
			t.Errorf("event %+v", ev)
		}
	}
}

type passwordOnly struct{ a *sftptest.Auth }

func (p passwordOnly) CheckPassword(ctx context.Context, name, password string, remote netip.Addr) (*users.User, error) {
	return p.a.CheckPassword(ctx, name, password, remote)
}

func TestClientBanned(t *testing.T) {
	rec := newRecorder(t)
	until := time.Date(2026, 3, 2, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	New(rec, Config{}).ClientBanned(Ban{Addr: "2001:db8:1:2::/64", Protocol: "ftps", User: "root",
		Reason: "score 20 within 10m0s reached 20", Until: until, Score: 20, Count: 2})
	ev := rec.waitN(t, 1)[0]
	d := ev.Detail
	if ev.DetailType != event.DetailTypeClientBanned || d.ClientAddress != "2001:db8:1:2::/64" || d.Protocol != "ftps" ||
		d.User != "root" || !d.BannedUntil.Equal(until) || d.BannedUntil.Location() != time.UTC || d.Score != 20 || d.Bans != 2 ||
		d.SessionID != "" || d.FailureReason == "" {
		t.Errorf("event %+v", ev)
	}
	if err := event.ValidateGateway(ev); err != nil {
		t.Error(err)
	}
}
