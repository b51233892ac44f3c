package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/ferrygw/ferry/gateway/internal/users"
)

const userUsage = `Usage:
  ferry user add NAME --home PREFIX [--password-stdin] [--key FILE|LINE]... [--perm LIST] [options]
  ferry user passwd NAME
  ferry user del NAME
  ferry user list
  ferry user s3-key add|del|list NAME [ID]   S3 access keys for the embedded endpoint
  ferry user s3-policy NAME                  the IAM policy for a partner's own AWS principal

Every command takes --users FILE (or s3://BUCKET/KEY), or --config FILE (default ferry.yaml) to
use its users_file. Edits keep the file's comments and are written atomically; a running server
picks them up. An edit of a file someone else changed meanwhile is refused (nothing is written):
run the command again.
`

func user(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	switch args[0] {
	case "add":
		return userAdd(ctx, args[1:], stdin, stderr)
	case "passwd":
		return userPasswd(ctx, args[1:], stdin, stderr)
	case "del":
		return userDel(ctx, args[1:], stderr)
	case "list":
		return userList(ctx, args[1:], stdout, stderr)
	case "s3-key":
		return userS3Key(ctx, args[1:], stdout, stderr)
	case "s3-policy":
		return userS3Policy(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, userUsage)
		return 0
	}
	fmt.Fprintf(stderr, "ferry user: unknown command %q\n\n%s", args[0], userUsage)
	return 2
}

func userAdd(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer) int {
	fs := newFlags("user add", "ferry user add NAME --home PREFIX [--password-stdin] [--key FILE|LINE]... [--perm LIST]", stderr)
	var files usersFileFlags
	files.register(fs)
	home := fs.String("home", "", "home key `PREFIX`, e.g. incoming/alice/ (required; \"\" is not accepted here)")
	withPassword := fs.Bool("password-stdin", false, "read a password from stdin (twice, without echo, on a terminal)")
	keys := &listFlag{}
	fs.Var(keys, "key", "an authorized_keys `FILE` or a key LINE; repeatable")
	perms := &listFlag{split: true}
	fs.Var(perms, "perm", "comma-separated permissions `LIST` (list,download,upload,overwrite,delete,rename,mkdir or *); default list,download")
	cidrs := &listFlag{split: true}
	fs.Var(cidrs, "cidr", "allow logins only from these comma-separated `CIDRS`; repeatable")
	auth := fs.String("auth", "", "any (either credential) or both (key, then password)")
	bucket := fs.String("bucket", "", "the user's `BUCKET` (default: the storage bucket)")
	protocols := &listFlag{split: true}
	fs.Var(protocols, "protocols", "comma-separated `LIST` of sftp, ftp the user may log in through (default both)")
	ftpPasswordOnly := fs.Bool("ftp-password-only", false, "with --auth both, let the password alone log in over FTP")
	pos, code, ok := parse(fs, args, 1)
	if !ok {
		return code
	}
	if *home == "" {
		fmt.Fprintln(stderr, "user add: --home is required")
		return 2
	}
	e := users.Entry{Name: pos[0], Home: *home, Auth: *auth, Bucket: *bucket, AllowedCIDRs: cidrs.values,
		Permissions: perms.values, Protocols: protocols.values, FTPPasswordOnly: *ftpPasswordOnly}
	if len(e.Permissions) == 0 {
		e.Permissions = []string{users.PermList, users.PermDownload}
	}
	for _, k := range keys.values {
		lines, err := keyLines(k)
		if err != nil {
			fmt.Fprintf(stderr, "user add: %v\n", err)
			return 1
		}
		e.PublicKeys = append(e.PublicKeys, lines...)
	}
	if *withPassword {
		pw, err := readPassword(stdin, stderr, true)
		if err != nil {
			fmt.Fprintf(stderr, "user add: %v\n", err)
			return 1
		}
		if e.PasswordHash, err = users.HashPassword(pw); err != nil {
			fmt.Fprintf(stderr, "user add: %v\n", err)
			return 1
		}
	}
	src, err := files.source(ctx)
	if err == nil {
		err = users.Add(ctx, src, e)
	}
	if err != nil {
		return editFailed(stderr, "user add", err)
	}
	fmt.Fprintf(stderr, "added %s to %s\n", e.Name, src)
	return 0
}

// keyLines reads --key: an authorized_keys line itself, or a file of them.
func keyLines(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if looksLikeKey(v) {
		return []string{v}, nil
	}
	data, err := os.ReadFile(v)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("--key %q is neither a key file nor a public key line", v)
		}
		return nil, fmt.Errorf("--key: %w", err)
	}
	var out []string
	for l := range strings.Lines(string(data)) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--key %s: no keys in the file", v)
	}
	return out, nil
}

func looksLikeKey(s string) bool {
	for _, p := range []string{"ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// editFailed reports a failed edit; a conflict says that nothing was written and to retry.
func editFailed(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
	if errors.Is(err, users.ErrConflict) {
		fmt.Fprintf(stderr, "%s: nothing was written; run the command again to apply it to the current file\n", cmd)
	}
	return 1
}

func userPasswd(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer) int {
	fs := newFlags("user passwd", "ferry user passwd NAME < password", stderr)
	var files usersFileFlags
	files.register(fs)
	pos, code, ok := parse(fs, args, 1)
	if !ok {
		return code
	}
	src, err := files.source(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "user passwd: %v\n", err)
		return 1
	}
	pw, err := readPassword(stdin, stderr, true)
	if err != nil {
		fmt.Fprintf(stderr, "user passwd: %v\n", err)
		return 1
	}
	h, err := users.HashPassword(pw)
	if err == nil {
		err = users.SetPassword(ctx, src, pos[0], h)
	}
	if err != nil {
		return editFailed(stderr, "user passwd", err)
	}
	fmt.Fprintf(stderr, "password of %s set in %s\n", pos[0], src)
	return 0
}

func userDel(ctx context.Context, args []string, stderr io.Writer) int {
	fs := newFlags("user del", "ferry user del NAME", stderr)
	var files usersFileFlags
	files.register(fs)
	pos, code, ok := parse(fs, args, 1)
	if !ok {
		return code
	}
	src, err := files.source(ctx)
	if err == nil {
		err = users.Delete(ctx, src, pos[0])
	}
	if err != nil {
		return editFailed(stderr, "user del", err)
	}
	fmt.Fprintf(stderr, "removed %s from %s\n", pos[0], src)
	return 0
}

func userList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("user list", "ferry user list", stderr)
	var files usersFileFlags
	files.register(fs)
	if _, code, ok := parse(fs, args, 0); !ok {
		return code
	}
	src, err := files.source(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "user list: %v\n", err)
		return 1
	}
	list, warnings, err := users.Read(ctx, src)
	if err != nil {
		fmt.Fprintf(stderr, "user list: %v\n", err)
		return 1
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOME\tBUCKET\tPERMISSIONS\tLOGIN\tFROM\tSTATUS")
	for _, u := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, orDash(u.Home, "(bucket root)"), orDash(u.Bucket, "(default)"),
			orDash(strings.Join(u.Permissions.Names(), ","), "(none)"), logins(u), cidrList(u), status(u))
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "user list: %v\n", err)
		return 1
	}
	return 0
}

func orDash(s, empty string) string {
	if s == "" {
		return empty
	}
	return s
}

// logins says which credentials a user has, never the hash itself.
func logins(u *users.User) string {
	var parts []string
	if u.PasswordHash != "" {
		parts = append(parts, "password")
	}
	if n := len(u.PublicKeys); n == 1 {
		parts = append(parts, "1 key")
	} else if n > 1 {
		parts = append(parts, fmt.Sprintf("%d keys", n))
	}
	sep := ","
	if u.Auth == users.AuthBoth {
		sep = "+"
	}
	s := strings.Join(parts, sep)
	if n := len(u.S3Keys); n > 0 { // a separate way in, not part of "both"
		k := "1 S3 key"
		if n > 1 {
			k = fmt.Sprintf("%d S3 keys", n)
		}
		if s != "" {
			s += ","
		}
		s += k
	}
	return orDash(s, "(none)")
}

func cidrList(u *users.User) string {
	var s []string
	for _, p := range u.AllowedCIDRs {
		s = append(s, p.String())
	}
	return orDash(strings.Join(s, ","), "any")
}

func status(u *users.User) string {
	if u.Disabled {
		return "disabled"
	}
	return "enabled"
}
