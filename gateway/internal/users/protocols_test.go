package users

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// Which protocols a user may use, and what the file says about a user FTP cannot log in: an
// error when the entry asks for ftp itself, a warning when ftp is only the default.
func TestParseProtocols(t *testing.T) {
	hash := testHash(t, "pw", cost)
	_, key := testKey(t, "k")
	tests := []struct {
		name    string
		entry   string // the lines after "home" and "permissions"
		want    Protocols
		problem string // expected error (prefix after "u.yaml:")
		warning string // expected warning (substring)
	}{
		{name: "default is both", entry: `password_hash: "` + hash + `"`, want: AllProtocols},
		{name: "sftp only", entry: `password_hash: "` + hash + `"` + "\n    protocols: [sftp]", want: Protocols{SFTP: true}},
		{name: "ftp only", entry: `password_hash: "` + hash + `"` + "\n    protocols: [ftp]", want: Protocols{FTP: true}},
		{name: "unknown", entry: `password_hash: "` + hash + `"` + "\n    protocols: [sftp, scp]",
			problem: "6: users[0].protocols[1]: unknown protocol \"scp\""},
		{name: "empty", entry: `password_hash: "` + hash + `"` + "\n    protocols: []",
			problem: "6: users[0].protocols: empty: the user could log in nowhere"},
		{name: "both by default warns", entry: `password_hash: "` + hash + `"` + "\n    public_keys: [\"" + key + "\"]\n    auth: both",
			want: AllProtocols, warning: "users[0].auth: auth: both asks for an SSH key, which FTP cannot offer"},
		{name: "both with ftp written is an error", entry: `password_hash: "` + hash + `"` + "\n    public_keys: [\"" + key + "\"]\n    auth: both\n    protocols: [sftp, ftp]",
			problem: "8: users[0].protocols: auth: both asks for an SSH key, which FTP cannot offer"},
		{name: "both allowed the password alone", entry: `password_hash: "` + hash + `"` + "\n    public_keys: [\"" + key + "\"]\n    auth: both\n    protocols: [sftp, ftp]\n    ftp_password_only: true",
			want: AllProtocols},
		{name: "both over sftp only", entry: `password_hash: "` + hash + `"` + "\n    public_keys: [\"" + key + "\"]\n    auth: both\n    protocols: [sftp]",
			want: Protocols{SFTP: true}},
		{name: "key only by default warns", entry: `public_keys: ["` + key + `"]`, want: AllProtocols,
			warning: "users[0]: no password_hash, so FTP logins are refused"},
		{name: "key only with ftp written is an error", entry: `public_keys: ["` + key + `"]` + "\n    protocols: [ftp, sftp]",
			problem: "6: users[0].protocols: ftp logs in with a password and the user has none"},
		{name: "password only flag without auth both", entry: `password_hash: "` + hash + `"` + "\n    ftp_password_only: true",
			want: AllProtocols, warning: "users[0].ftp_password_only: has no effect"},
		{name: "disabled users are not reported", entry: `public_keys: ["` + key + `"]` + "\n    disabled: true", want: AllProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "users:\n  - name: u\n    home: u/\n    permissions: [list]\n    " + tt.entry + "\n"
			list, warnings, err := Parse("u.yaml", []byte(src))
			if tt.problem != "" {
				if err == nil || !strings.HasPrefix(err.Error(), "u.yaml:"+tt.problem) {
					t.Fatalf("error %v, want u.yaml:%s…", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := list[0].Protocols; got != tt.want {
				t.Errorf("protocols %+v, want %+v", got, tt.want)
			}
			joined := strings.Join(warnings, "\n")
			if tt.warning == "" && joined != "" || !strings.Contains(joined, tt.warning) {
				t.Errorf("warnings %q, want %q", warnings, tt.warning)
			}
		})
	}
}

// A protocol refuses users it may not serve, with ErrAuth and after the password was checked.
func TestForProtocol(t *testing.T) {
	key, line := testKey(t, "k")
	h := testHash(t, "right", cost)
	p := tempPath(t, "users.yaml")
	writeFile(t, p, `users:
  - name: both
    password_hash: "`+h+`"
    public_keys: ["`+line+`"]
    auth: both
    protocols: [sftp]
    home: b/
    permissions: [list]
  - name: bothftp
    password_hash: "`+h+`"
    public_keys: ["`+line+`"]
    auth: both
    ftp_password_only: true
    home: b/
    permissions: [list]
  - name: sftponly
    password_hash: "`+h+`"
    public_keys: ["`+line+`"]
    protocols: [sftp]
    home: s/
    permissions: [list]
  - name: ftponly
    password_hash: "`+h+`"
    public_keys: ["`+line+`"]
    protocols: [ftp]
    home: f/
    permissions: [list]
`)
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	addr := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		user, protocol string
		ok             bool
	}{
		{"both", ProtoFTP, false},
		{"both", ProtoSFTP, true},
		{"bothftp", ProtoFTP, true},
		{"bothftp", "ftps", true},
		{"sftponly", ProtoFTP, false},
		{"sftponly", ProtoSFTP, true},
		{"ftponly", ProtoSFTP, false},
		{"ftponly", ProtoFTP, true},
	}
	for _, tt := range tests {
		t.Run(tt.user+"/"+tt.protocol, func(t *testing.T) {
			a := s.ForProtocol(tt.protocol)
			u, err := a.CheckPassword(ctx, tt.user, "right", addr)
			if tt.ok != (err == nil) || tt.ok && u.Name != tt.user {
				t.Fatalf("password: %v, %v", u, err)
			}
			if err != nil && !errors.Is(err, ErrAuth) {
				t.Errorf("refusal %v does not wrap ErrAuth", err)
			}
			if _, err := a.CheckPassword(ctx, tt.user, "wrong", addr); !errors.Is(err, ErrAuth) {
				t.Errorf("wrong password: %v", err)
			}
			if tt.protocol != ProtoSFTP {
				return
			}
			if _, err := a.CheckPublicKey(ctx, tt.user, key, addr); tt.ok != (err == nil) {
				t.Errorf("key: %v", err)
			}
		})
	}
}
