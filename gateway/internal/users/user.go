// Package users is the admin-managed user store: password hashes, SSH keys, homes, permissions.
package users

import (
	"net/netip"

	"golang.org/x/crypto/ssh"
)

// User is one account as loaded from the users file. Values are immutable once loaded: a reload
// builds new Users, so a session keeps the User it logged in with.
type User struct {
	Name         string
	PasswordHash string          // bcrypt; empty = no password login
	PublicKeys   []ssh.PublicKey // parsed authorized_keys lines; empty = no key login
	// Auth says which credentials a login needs: AuthAny (either configured method) or AuthBoth
	// (SSH public key and then password; FTP, which has no keys, uses the password).
	Auth string
	// Bucket is the user's bucket; empty means the storage's default bucket.
	Bucket string
	// Home is the key prefix of the user's home, normalised to end with "/" (or "" for the bucket root).
	Home         string
	Permissions  Permissions
	AllowedCIDRs []netip.Prefix // empty = any address
	Disabled     bool
	// S3Keys are the user's access keys for the embedded S3 endpoint, confined to the home and
	// permissions above; their secrets are sealed (package s3keys).
	S3Keys []S3Key
	// Protocols are the front ends the user may log in through (default: all of them).
	Protocols Protocols
	// FTPPasswordOnly lets a user with Auth "both" log in over FTP with the password alone:
	// FTP has no keys, so without it such a user is refused on FTP (see FTPProblem).
	FTPPasswordOnly bool
}

// S3Key is one access key of a user.
type S3Key struct {
	ID      string
	Sealed  string // the secret, sealed under the endpoint's key-encryption key
	Created string // RFC 3339, as written; informational
}

// Protocols says which front ends admit a user.
type Protocols struct {
	SFTP bool
	FTP  bool // FTP and FTPS (explicit or implicit)
}

// Protocol names as written in the users file and passed to Allows.
const (
	ProtoSFTP = "sftp"
	ProtoFTP  = "ftp"
)

// AllProtocols is the default of a user whose entry names none.
var AllProtocols = Protocols{SFTP: true, FTP: true}

// Names returns the protocol names p admits, in the file's order.
func (p Protocols) Names() []string {
	var out []string
	if p.SFTP {
		out = append(out, ProtoSFTP)
	}
	if p.FTP {
		out = append(out, ProtoFTP)
	}
	return out
}

// Allows reports whether u may log in through protocol ("sftp", or "ftp"/"ftps"); for FTP the
// user's credentials must also be ones FTP can check (FTPProblem).
func (u *User) Allows(protocol string) bool {
	switch protocol {
	case ProtoSFTP:
		return u.Protocols.SFTP
	case ProtoFTP, "ftps":
		return u.FTPProblem() == ""
	}
	return false
}

// FTPProblem says why u cannot log in over FTP, or "" if they can. FTP logs in with a name and
// a password only: a user without a password, or one whose auth also asks for an SSH key, is
// refused there unless the entry allows the password alone (ftp_password_only).
func (u *User) FTPProblem() string {
	switch {
	case !u.Protocols.FTP:
		return "ftp is not in the user's protocols"
	case u.PasswordHash == "":
		return "the user has no password, and FTP logs in with one"
	case u.Auth == AuthBoth && !u.FTPPasswordOnly:
		return "auth: both needs an SSH key, which FTP cannot offer (ftp_password_only: true lets the password alone log in over FTP)"
	}
	return ""
}

// Auth modes.
const (
	AuthAny  = "any"
	AuthBoth = "both"
)

// Permission names as written in the users file.
const (
	PermList      = "list"
	PermDownload  = "download"
	PermUpload    = "upload"
	PermOverwrite = "overwrite"
	PermDelete    = "delete"
	PermRename    = "rename"
	PermMkdir     = "mkdir"
	PermAll       = "*"
)

// Permissions is what a user may do in their home.
type Permissions struct {
	List, Download, Upload, Overwrite, Delete, Rename, Mkdir bool
}

// ReadOnly reports whether the user can change nothing.
func (p Permissions) ReadOnly() bool {
	return !p.Upload && !p.Overwrite && !p.Delete && !p.Rename && !p.Mkdir
}

// AllowedFrom reports whether addr may log in as u.
func (u *User) AllowedFrom(addr netip.Addr) bool {
	if len(u.AllowedCIDRs) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range u.AllowedCIDRs {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
