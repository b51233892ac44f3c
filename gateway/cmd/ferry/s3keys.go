package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"text/tabwriter"
	"time"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/iampolicy"
	"github.com/ferrygw/ferry/gateway/internal/s3keys"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// kekEnv is where `ferry user s3-key add` finds the key-encryption key when the config does
// not name one (an administrator editing an S3 users file without the service's config).
const kekEnv = "FERRY_S3_KEY_ENCRYPTION_KEY"

const s3KeyUsage = `Usage:
  ferry user s3-key add NAME     make an S3 access key for NAME; its secret is printed once
  ferry user s3-key del NAME ID  remove one of NAME's access keys
  ferry user s3-key list NAME    list NAME's access key ids

The key works on the embedded S3 endpoint, only inside NAME's home and with NAME's
permissions. Its secret is kept sealed in the users file with the key-encryption key of the
config (embedded.s3.key_encryption_key), or else of $` + kekEnv + `.
Every command takes --users FILE (or s3://BUCKET/KEY) or --config FILE.
`

func userS3Key(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, s3KeyUsage)
		return 2
	}
	switch args[0] {
	case "add":
		return s3KeyAdd(ctx, args[1:], stdout, stderr)
	case "del":
		return s3KeyDel(ctx, args[1:], stderr)
	case "list":
		return s3KeyList(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, s3KeyUsage)
		return 0
	}
	fmt.Fprintf(stderr, "ferry user s3-key: unknown command %q\n\n%s", args[0], s3KeyUsage)
	return 2
}

// sealer returns the sealer of the key-encryption key the service uses: the config's
// embedded.s3.key_encryption_key (its ${VAR} from this environment), else $FERRY_S3_KEY_ENCRYPTION_KEY.
func (u *usersFileFlags) sealer() (*s3keys.Sealer, error) {
	kek := ""
	cfg, err := config.Read(u.config, func(k string) (string, bool) { v, _ := os.LookupEnv(k); return v, true })
	switch {
	case err == nil:
		kek = cfg.Embedded.S3.KeyEncryptionKey
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if kek == "" {
		kek = os.Getenv(kekEnv)
	}
	if kek == "" {
		return nil, fmt.Errorf("no key-encryption key: set embedded.s3.key_encryption_key in %s (or its ${VAR}), or $%s", u.config, kekEnv)
	}
	raw, err := s3keys.ParseKEK(kek)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	return s3keys.NewSealer(raw)
}

func s3KeyAdd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("user s3-key add", "ferry user s3-key add NAME", stderr)
	var files usersFileFlags
	files.register(fs)
	pos, code, ok := parse(fs, args, 1)
	if !ok {
		return code
	}
	name := pos[0]
	sealer, err := files.sealer()
	if err != nil {
		fmt.Fprintf(stderr, "user s3-key add: %v\n", err)
		return 1
	}
	src, err := files.source(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "user s3-key add: %v\n", err)
		return 1
	}
	id, secret, err := s3keys.New()
	if err != nil {
		fmt.Fprintf(stderr, "user s3-key add: %v\n", err)
		return 1
	}
	sealed, err := sealer.Seal(name, id, secret)
	if err == nil {
		err = users.AddS3Key(ctx, src, name, users.S3KeyEntry{ID: id, Secret: sealed, Created: time.Now().UTC().Format(time.RFC3339)})
	}
	if err != nil {
		return editFailed(stderr, "user s3-key add", err)
	}
	fmt.Fprintf(stderr, "added an S3 key to %s in %s; its secret is shown once, below\n", name, src)
	fmt.Fprintf(stdout, "AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", id, secret)
	return 0
}

func s3KeyDel(ctx context.Context, args []string, stderr io.Writer) int {
	fs := newFlags("user s3-key del", "ferry user s3-key del NAME ACCESS-KEY-ID", stderr)
	var files usersFileFlags
	files.register(fs)
	pos, code, ok := parse(fs, args, 2)
	if !ok {
		return code
	}
	src, err := files.source(ctx)
	if err == nil {
		err = users.DeleteS3Key(ctx, src, pos[0], pos[1])
	}
	if err != nil {
		return editFailed(stderr, "user s3-key del", err)
	}
	fmt.Fprintf(stderr, "removed S3 key %s of %s from %s\n", pos[1], pos[0], src)
	return 0
}

func s3KeyList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("user s3-key list", "ferry user s3-key list NAME", stderr)
	var files usersFileFlags
	files.register(fs)
	pos, code, ok := parse(fs, args, 1)
	if !ok {
		return code
	}
	u, code := readUser(ctx, &files, pos[0], "user s3-key list", stderr)
	if u == nil {
		return code
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCESS KEY ID\tCREATED")
	for _, k := range u.S3Keys {
		fmt.Fprintf(tw, "%s\t%s\n", k.ID, orDash(k.Created, "-"))
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "user s3-key list: %v\n", err)
		return 1
	}
	return 0
}

// readUser reads the users file and returns user name (nil and the exit code when it fails).
func readUser(ctx context.Context, files *usersFileFlags, name, cmd string, stderr io.Writer) (*users.User, int) {
	src, err := files.source(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return nil, 1
	}
	list, _, err := users.Read(ctx, src)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return nil, 1
	}
	for _, u := range list {
		if u.Name == name {
			return u, 0
		}
	}
	fmt.Fprintf(stderr, "%s: %q: %v in %s\n", cmd, name, users.ErrNoUser, src)
	return nil, 1
}

// userS3Policy prints the IAM policy confining a partner's own AWS principal to the user's home
// and permissions.
func userS3Policy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("user s3-policy", `ferry user s3-policy NAME [--bucket BUCKET] [--partition aws]

Prints the IAM policy (JSON) to attach to a partner's own IAM user or role so that, uploading
with the S3 API straight to the deployment's bucket, they reach only NAME's home, with NAME's
permissions: the same as over SFTP and FTP, and as NAME's keys on the embedded endpoint.`, stderr)
	var files usersFileFlags
	files.register(fs)
	bucket := fs.String("bucket", "", "the deployment's `BUCKET` (default: the user's bucket, else the config's storage.s3.bucket)")
	partition := fs.String("partition", "aws", "the AWS `partition` of the bucket's ARN (aws, aws-cn, aws-us-gov)")
	pos, code, ok := parse(fs, args, 1)
	if !ok {
		return code
	}
	u, code := readUser(ctx, &files, pos[0], "user s3-policy", stderr)
	if u == nil {
		return code
	}
	if *bucket == "" {
		if cfg, err := config.Read(files.config, func(string) (string, bool) { return "", true }); err == nil {
			*bucket = cfg.Storage.S3.Bucket
		}
	}
	p, err := iampolicy.For(u, *bucket, *partition)
	if err != nil {
		fmt.Fprintf(stderr, "user s3-policy: %s: %v\n", u.Name, err)
		return 1
	}
	return writeJSON(stdout, stderr, "user s3-policy", p)
}
