package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrygw/ferry/pipeline/testtool"
)

// loads counts the times the gateway put a users file in force.
func (h *hostile) loads() int { return strings.Count(h.logs.String(), "msg=\"users loaded\"") }

// reload writes content as the users file and waits until the gateway put it in force.
func (h *hostile) reload(t *testing.T, content string) time.Time {
	t.Helper()
	before := h.loads()
	at := h.setUsers(t, content)
	testtool.Eventually(t, 10*time.Second, "the users file to be reloaded", func() bool { return h.loads() > before })
	return at
}

// Per-user protocols: a user with auth: both (key and password) is refused on FTP, which has no
// keys, unless the users file lets the password alone in (ftp_password_only); protocols: [sftp]
// or [ftp] keep a user off the other protocol. Real clients: curl and OpenSSH sftp.
func TestProtocolsPerUser(t *testing.T) {
	t.Parallel()
	h := startHostile(t, gwOptions{users: func(h *hostile) string {
		return "users:\n" + h.entry("both", "    auth: both\n")
	}})
	// The hole of the issue: the password alone let an auth: both user in over FTP.
	if out, code, _ := h.curlLogin(t, userIP, "both"); code != 67 {
		t.Errorf("auth: both over FTP with the password alone: curl exit %d, want 67 (login denied):\n%s", code, out)
	}
	if out, _, ok := h.sftpOnce(t, userIP, "both", byKeyAndPassword, "ls\n"); !ok {
		t.Errorf("auth: both over SFTP with key and password:\n%s", out)
	}
	if out, _, ok := h.sftpOnce(t, userIP, "both", byKey, "ls\n"); ok {
		t.Errorf("auth: both over SFTP with the key alone:\n%s", out)
	}
	h.reload(t, "users:\n"+h.entry("both", "    auth: both\n    ftp_password_only: true\n")+
		h.entry("sftponly", "    protocols: [sftp]\n")+h.entry("ftponly", "    protocols: [ftp]\n"))
	tests := []struct {
		user      string
		sftp, ftp bool
	}{
		{"both", true, true},
		{"sftponly", true, false},
		{"ftponly", false, true},
	}
	for _, tt := range tests {
		auth := byKey
		if tt.user == "both" {
			auth = byKeyAndPassword
		}
		if out, _, ok := h.sftpOnce(t, userIP, tt.user, auth, "ls\n"); ok != tt.sftp {
			t.Errorf("%s over SFTP: logged in %v, want %v:\n%s", tt.user, ok, tt.sftp, out)
		}
		if out, code, _ := h.curlLogin(t, userIP, tt.user); (code == 0) != tt.ftp || code != 0 && code != 67 {
			t.Errorf("%s over FTP: curl exit %d, want login %v:\n%s", tt.user, code, tt.ftp, out)
		}
	}
}

// Revocation: sessions already open follow the users file. alice's open OpenSSH sftp and lftp
// sessions stop working within seconds of her being disabled; bob, whose permissions drop to
// read-only, keeps his sessions but cannot upload from his next command on.
func TestRevocationReachesOpenSessions(t *testing.T) {
	t.Parallel()
	const within = 5 * time.Second
	h := startHostile(t, gwOptions{users: func(h *hostile) string {
		return "users:\n" + h.entry("alice", "") + h.entry("bob", "")
	}})
	for _, f := range []string{"a.txt", "b.txt", "b2.txt"} {
		if err := os.WriteFile(filepath.Join(h.dir, f), []byte(f+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sftpSession := func(user string) *interactive {
		p := startInteractive(t, "sftp "+user, h.openSSH(t, t.Context(), userIP, user, byKey), "!echo")
		if out, ok := p.do("pwd"); !ok || !strings.Contains(out, "Remote working directory: /") {
			t.Fatalf("%s's sftp session: %q", user, out)
		}
		return p
	}
	aliceSFTP, aliceFTP := sftpSession("alice"), h.lftp(t, userIP, "alice")
	bobSFTP, bobFTP := sftpSession("bob"), h.lftp(t, userIP, "bob")
	for _, step := range []struct {
		p           *interactive
		cmd, expect string
	}{
		{aliceSFTP, "put a.txt", ""},
		{aliceSFTP, "ls", "a.txt"},
		{aliceFTP, "ls", "a.txt"},
		{bobSFTP, "put b.txt", ""},
		{bobFTP, "put b.txt -o b-ftp.txt", ""},
		{bobFTP, "ls", "b-ftp.txt"},
	} {
		if out, ok := step.p.do(step.cmd); !ok || !strings.Contains(out, step.expect) || strings.Contains(out, "denied") {
			t.Fatalf("%s: %s: %q", step.p.name, step.cmd, out)
		}
	}

	changed := h.reload(t, "users:\n"+h.entry("alice", "    disabled: true\n")+
		strings.Replace(h.entry("bob", ""), `permissions: ["*"]`, "permissions: [list, download]", 1))

	// alice: the next command of each session fails, and it fails within seconds of the edit.
	stopped := func(name string, p *interactive, failed func(out string, ok bool) bool) {
		for {
			out, ok := p.do("ls")
			if failed(out, ok) {
				took := time.Since(changed)
				t.Logf("%s stopped working %v after alice was disabled (%q)", name, took.Round(time.Millisecond), strings.TrimSpace(out))
				if took > within {
					t.Errorf("%s stopped only after %v", name, took)
				}
				return
			}
			if time.Since(changed) > 2*within {
				t.Errorf("%s still works %v after alice was disabled: %q", name, time.Since(changed).Round(time.Second), out)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	stopped("alice's open OpenSSH sftp session", aliceSFTP, func(out string, ok bool) bool { return !ok || !strings.Contains(out, "a.txt") })
	stopped("alice's open lftp session", aliceFTP, func(out string, ok bool) bool { return !ok || !strings.Contains(out, "a.txt") })

	// bob: still logged in, may list, may no longer upload.
	out, ok := bobSFTP.do("put b2.txt")
	if !ok || !strings.Contains(out, "Permission denied") {
		t.Errorf("bob's sftp upload after his permissions dropped: %v %q", ok, out)
	}
	if out, ok := bobSFTP.do("ls"); !ok || !strings.Contains(out, "b.txt") || strings.Contains(out, "b2.txt") {
		t.Errorf("bob's sftp listing: %v %q", ok, out)
	}
	out, ok = bobFTP.do("put b2.txt")
	if !ok || !strings.Contains(out, "550") {
		t.Errorf("bob's lftp upload after his permissions dropped: %v %q", ok, out)
	}
	if out, ok := bobFTP.do("ls"); !ok || !strings.Contains(out, "b-ftp.txt") || strings.Contains(out, "b2.txt") {
		t.Errorf("bob's lftp listing: %v %q", ok, out)
	}
	if n := h.metric(t, "ferry_sessions_revoked_total"); n != 2 {
		t.Errorf("%d sessions revoked, want alice's 2", n)
	}
	if strings.Contains(h.logs.String(), "user=bob reason=") || strings.Contains(h.logs.String(), "msg=\"session revoked\" component=sessions user=bob") {
		t.Error("a session of bob was revoked")
	}
}
