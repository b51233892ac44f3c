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
}

// S3Key is one access key of a user.
type S3Key struct {
	ID      string
	Sealed  string // the secret, sealed under the endpoint's key-encryption key
	Created string // RFC 3339, as written; informational
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
