package users

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/s3keys"
	"github.com/ferrygw/ferry/pipeline/strictyaml"
)

// File is the users file as written:
//
//	users:
//	  - name: alice
//	    password_hash: "$2a$12$..."       # bcrypt (`ferry hash-password`); optional
//	    public_keys: ["ssh-ed25519 AAAA... alice@laptop"]
//	    auth: any                         # any (default) | both (key, then password)
//	    bucket: ""                        # default: the storage bucket
//	    home: incoming/alice/             # required; "" is the whole bucket
//	    permissions: [list, download]     # required; ["*"] is everything
//	    allowed_cidrs: [10.0.0.0/8]       # default: any address
//	    protocols: [sftp, ftp]            # default: both (ftp covers FTPS)
//	    ftp_password_only: false          # auth: both over FTP with the password alone
//	    disabled: false
//	    s3_keys:                          # `ferry user s3-key add`: the secret is sealed
//	      - {id: FRY…, secret: "v1:…", created: "2026-12-06T10:00:00Z"}
type File struct {
	Users []Entry `yaml:"users"`
}

// Entry is one user as written in the users file (strings as typed; see User for the parsed form).
type Entry struct {
	Name         string   `yaml:"name"`
	PasswordHash string   `yaml:"password_hash"`
	PublicKeys   []string `yaml:"public_keys"`
	Auth         string   `yaml:"auth"`
	Bucket       string   `yaml:"bucket"`
	Home         string   `yaml:"home"`
	Permissions  []string `yaml:"permissions"`
	AllowedCIDRs []string `yaml:"allowed_cidrs"`
	// Protocols lists the front ends the user may use, "sftp" and "ftp" (FTP and FTPS); nil
	// (absent) means both.
	Protocols       []string `yaml:"protocols"`
	FTPPasswordOnly bool     `yaml:"ftp_password_only"`
	Disabled        bool     `yaml:"disabled"`
	// S3Keys are written by `ferry user s3-key add`; never by hand (the secret is sealed).
	S3Keys []S3KeyEntry `yaml:"s3_keys"`
}

// S3KeyEntry is one S3 access key as written in the users file.
type S3KeyEntry struct {
	ID      string `yaml:"id"`
	Secret  string `yaml:"secret"` // sealed: v1:<key id>:<data>
	Created string `yaml:"created"`
}

// MinRecommendedCost is the bcrypt cost below which a hash is reported as weak.
const MinRecommendedCost = 10

// Load reads and validates the users file at path. Warnings (e.g. a weak bcrypt cost) do not
// stop loading; the error lists every problem as "file:line: users[i].field: reason".
func Load(path string) (users []*User, warnings []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("users: %w", err)
	}
	return Parse(path, data)
}

// Read reads and validates the users file kept in src (see Load).
func Read(ctx context.Context, src Source) (users []*User, warnings []string, err error) {
	c, err := src.read(ctx)
	if err != nil {
		return nil, nil, err
	}
	return Parse(src.String(), c.data)
}

// Parse is Load for content already read; file names it in messages.
func Parse(file string, data []byte) (users []*User, warnings []string, err error) {
	var f File
	pos, err := strictyaml.Decode(file, data, &f, strictyaml.Options{})
	if err != nil {
		return nil, nil, err
	}
	if _, ok := pos["users"]; !ok {
		// Also what a reload sees while an editor is still writing the file: refuse, keep the old.
		return nil, nil, &strictyaml.Problem{File: file, Line: 1, Msg: "no users: key (write \"users: []\" for none)"}
	}
	var problems []error
	seen := map[string]int{}
	keyOwner := map[string]string{} // access key id -> user
	for i, e := range f.Users {
		base := fmt.Sprintf("users[%d]", i)
		at := func(field string) (string, int) {
			path := base
			if field != "" {
				path += "." + field
			}
			return path, pos.Line(path)
		}
		errf := func(field, format string, args ...any) {
			path, line := at(field)
			problems = append(problems, &strictyaml.Problem{File: file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
		}
		warnf := func(field, format string, args ...any) {
			path, line := at(field)
			warnings = append(warnings, (&strictyaml.Problem{File: file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}).Error())
		}
		present := func(field string) bool { _, ok := pos[base+"."+field]; return ok }
		u := build(e, present, errf, warnf)
		if j, dup := seen[e.Name]; dup && e.Name != "" {
			errf("name", "user %q is already defined at line %d", e.Name, pos.Line(fmt.Sprintf("users[%d]", j)))
		}
		seen[e.Name] = i
		for k, key := range e.S3Keys {
			if other, dup := keyOwner[key.ID]; dup && key.ID != "" {
				errf(fmt.Sprintf("s3_keys[%d].id", k), "access key %s is already %s's", key.ID, other)
			}
			keyOwner[key.ID] = e.Name
		}
		users = append(users, u)
	}
	if len(problems) > 0 {
		return nil, warnings, strictyaml.Join(problems)
	}
	if len(users) == 0 {
		warnings = append(warnings, file+": no users: nobody can log in")
	}
	return users, warnings, nil
}

type reportFunc func(field, format string, args ...any)

// Check validates e on its own (as `ferry user add` does before touching the file); the error
// names each bad field.
func (e Entry) Check() error {
	var problems []error
	present := func(field string) bool { return field != "protocols" || e.Protocols != nil }
	build(e, present, func(field, format string, args ...any) {
		problems = append(problems, &strictyaml.Problem{Path: field, Msg: fmt.Sprintf(format, args...)})
	}, func(string, string, ...any) {})
	return strictyaml.Join(problems)
}

// build turns an entry into a User, reporting each problem through errf with the field's name
// relative to the entry ("home", "public_keys[1]"). present says whether a field was written.
func build(e Entry, present func(string) bool, errf, warnf reportFunc) *User {
	u := &User{Name: e.Name, PasswordHash: e.PasswordHash, Auth: e.Auth, Bucket: e.Bucket, Disabled: e.Disabled,
		FTPPasswordOnly: e.FTPPasswordOnly}
	if msg := nameProblem(e.Name); msg != "" {
		errf("name", "%s", msg)
	}
	if e.PasswordHash != "" {
		cost, err := bcrypt.Cost([]byte(e.PasswordHash))
		switch {
		case err != nil:
			errf("password_hash", "not a bcrypt hash (make one with `ferry hash-password`)")
		case cost < MinRecommendedCost:
			warnf("password_hash", "bcrypt cost %d is weak; use at least %d (`ferry hash-password` uses %d)", cost, MinRecommendedCost, HashCost)
		}
	}
	for j, line := range e.PublicKeys {
		field := fmt.Sprintf("public_keys[%d]", j)
		key, err := parseAuthorizedKey(line)
		if err != nil {
			errf(field, "%v", err)
			continue
		}
		u.PublicKeys = append(u.PublicKeys, key)
	}
	for k, key := range e.S3Keys {
		field := fmt.Sprintf("s3_keys[%d]", k)
		if err := s3keys.CheckID(key.ID); err != nil {
			errf(field+".id", "%v", err)
		}
		if err := s3keys.CheckSealed(key.Secret); err != nil {
			errf(field+".secret", "not a sealed secret: add keys with `ferry user s3-key add`, never by hand")
		}
		u.S3Keys = append(u.S3Keys, S3Key{ID: key.ID, Sealed: key.Secret, Created: key.Created})
	}
	switch e.Auth {
	case "", AuthAny:
		u.Auth = AuthAny
		if !e.Disabled && e.PasswordHash == "" && len(e.PublicKeys) == 0 && len(e.S3Keys) == 0 {
			errf("", "no credentials: set password_hash or public_keys (or add an S3 key with `ferry user s3-key add`)")
		}
	case AuthBoth:
		if e.PasswordHash == "" || len(e.PublicKeys) == 0 {
			errf("auth", "auth: both needs password_hash and public_keys")
		}
	default:
		errf("auth", "must be %q or %q, got %q", AuthAny, AuthBoth, e.Auth)
	}
	if e.Bucket != "" {
		if err := config.CheckBucketName(e.Bucket); err != nil {
			errf("bucket", "%v", err)
		}
	}
	if !present("home") {
		errf("", "home is required (a key prefix such as incoming/%s/; \"\" is the whole bucket)", e.Name)
	} else if home, err := NormalizeHome(e.Home); err != nil {
		errf("home", "%v", err)
	} else {
		u.Home = home
	}
	if !present("permissions") {
		errf("", "permissions is required, e.g. [list, download] for read-only or [\"*\"] for everything")
	} else {
		p, err := ParsePermissions(e.Permissions)
		if err != nil {
			errf("permissions", "%v", err)
		}
		u.Permissions = p
		if p == (Permissions{}) && err == nil {
			warnf("permissions", "empty: the user can log in but do nothing")
		}
	}
	for j, c := range e.AllowedCIDRs {
		p, err := parseCIDR(c)
		if err != nil {
			errf(fmt.Sprintf("allowed_cidrs[%d]", j), "%v", err)
			continue
		}
		u.AllowedCIDRs = append(u.AllowedCIDRs, p)
	}
	checkProtocols(e, u, present("protocols"), errf, warnf)
	return u
}

// checkProtocols parses e's protocols into u and reports a user FTP cannot log in: an error when
// the entry names ftp itself (what it asks for cannot happen), a warning when ftp is only the
// default (the refusal is safe, and `ferry check` shows it).
func checkProtocols(e Entry, u *User, written bool, errf, warnf reportFunc) {
	u.Protocols = AllProtocols
	if written {
		u.Protocols = Protocols{}
		if len(e.Protocols) == 0 {
			errf("protocols", "empty: the user could log in nowhere (use disabled: true to refuse every login)")
		}
		for j, p := range e.Protocols {
			switch p {
			case ProtoSFTP:
				u.Protocols.SFTP = true
			case ProtoFTP:
				u.Protocols.FTP = true
			default:
				errf(fmt.Sprintf("protocols[%d]", j), "unknown protocol %q (known: sftp, ftp; ftp covers FTPS)", p)
			}
		}
	}
	if e.FTPPasswordOnly && (e.Auth != AuthBoth || !u.Protocols.FTP) {
		warnf("ftp_password_only", "has no effect: it only matters for a user with auth: both who may use ftp")
	}
	if e.Disabled || !u.Protocols.FTP {
		return
	}
	switch {
	case e.PasswordHash == "" && len(e.PublicKeys) > 0 && written:
		errf("protocols", "ftp logs in with a password and the user has none: remove ftp or set password_hash")
	case e.PasswordHash == "" && len(e.PublicKeys) > 0:
		warnf("", "no password_hash, so FTP logins are refused; write protocols: [sftp] to say so")
	case e.Auth == AuthBoth && !e.FTPPasswordOnly && e.PasswordHash != "" && len(e.PublicKeys) > 0 && written:
		errf("protocols", "auth: both asks for an SSH key, which FTP cannot offer: remove ftp, "+
			"or set ftp_password_only: true to let the password alone log in over FTP")
	case e.Auth == AuthBoth && !e.FTPPasswordOnly && e.PasswordHash != "" && len(e.PublicKeys) > 0:
		warnf("auth", "auth: both asks for an SSH key, which FTP cannot offer, so FTP logins are refused: "+
			"write protocols: [sftp], or ftp_password_only: true to let the password alone log in over FTP")
	}
}

func nameProblem(name string) string {
	if name == "" {
		return "required"
	}
	if len(name) > 64 {
		return "longer than 64 characters"
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' ||
			i > 0 && (r == '.' || r == '-' || r == '@')
		if !ok {
			return fmt.Sprintf("%q: names hold letters, digits and _ (and . - @ after the first character)", name)
		}
	}
	return ""
}

// parseAuthorizedKey parses one authorized_keys line. Options (from=, command=, ...) are refused
// rather than ignored: Ferry would not enforce them (use allowed_cidrs).
func parseAuthorizedKey(line string) (ssh.PublicKey, error) {
	key, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("not an SSH public key (an authorized_keys line such as \"ssh-ed25519 AAAA... name\")")
	}
	if len(options) > 0 {
		return nil, fmt.Errorf("key options (%s) are not supported; use allowed_cidrs", strings.Join(options, ","))
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("holds more than one key; write one key per list item")
	}
	return key, nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7)", s)
}

// NormalizeHome checks a home prefix and returns it ending in "/" ("" stays "": the whole
// bucket). It refuses a leading "/", empty, "." and ".." segments and control characters.
func NormalizeHome(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	if strings.HasPrefix(h, "/") {
		return "", fmt.Errorf("%q must not start with \"/\" (it is a key prefix; \"\" is the whole bucket)", h)
	}
	for _, r := range h {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%q holds a control character", h)
		}
	}
	trimmed := strings.TrimSuffix(h, "/")
	for seg := range strings.SplitSeq(trimmed, "/") {
		switch seg {
		case "", ".", "..":
			return "", fmt.Errorf("%q has an empty, \".\" or \"..\" segment", h)
		}
	}
	return trimmed + "/", nil
}

// ParsePermissions parses permission names; "*" grants everything.
func ParsePermissions(names []string) (Permissions, error) {
	var p Permissions
	var unknown []string
	for _, n := range names {
		switch n {
		case PermAll:
			p = Permissions{List: true, Download: true, Upload: true, Overwrite: true, Delete: true, Rename: true, Mkdir: true}
		case PermList:
			p.List = true
		case PermDownload:
			p.Download = true
		case PermUpload:
			p.Upload = true
		case PermOverwrite:
			p.Overwrite = true
		case PermDelete:
			p.Delete = true
		case PermRename:
			p.Rename = true
		case PermMkdir:
			p.Mkdir = true
		default:
			unknown = append(unknown, fmt.Sprintf("%q", n))
		}
	}
	if len(unknown) > 0 {
		return p, fmt.Errorf("unknown permission %s (known: list, download, upload, overwrite, delete, rename, mkdir, *)", strings.Join(unknown, ", "))
	}
	return p, nil
}

// Names returns the permission names p grants, in the order of the file's documentation.
func (p Permissions) Names() []string {
	var out []string
	for _, x := range []struct {
		on   bool
		name string
	}{{p.List, PermList}, {p.Download, PermDownload}, {p.Upload, PermUpload}, {p.Overwrite, PermOverwrite},
		{p.Delete, PermDelete}, {p.Rename, PermRename}, {p.Mkdir, PermMkdir}} {
		if x.on {
			out = append(out, x.name)
		}
	}
	return out
}
