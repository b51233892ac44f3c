package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/ferrygw/ferry/gateway/internal/app"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

const defaultConfig = "ferry.yaml"

// newFlags returns a flag set that reports to stderr and prints help as synopsis + options.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n", synopsis)
		if hasFlags(fs) {
			fmt.Fprintln(stderr, "\nOptions:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parse parses flags and positional arguments in any order ("add NAME --home x" and
// "add --home x NAME"), returning the positional ones. It returns the exit code to use when
// parsing fails or help was asked for (ok false).
func parse(fs *flag.FlagSet, args []string, wantArgs int) (positional []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, false
			}
			return nil, 2, false
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	if len(positional) != wantArgs {
		if wantArgs == 0 {
			fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), positional[0])
		} else {
			fmt.Fprintf(fs.Output(), "%s: want %d argument(s), got %d\n", fs.Name(), wantArgs, len(positional))
		}
		fs.Usage()
		return nil, 2, false
	}
	return positional, 0, true
}

// listFlag collects a repeatable flag; each value may also be a comma-separated list when split.
type listFlag struct {
	values []string
	split  bool
}

func (l *listFlag) String() string { return strings.Join(l.values, ",") }

func (l *listFlag) Set(v string) error {
	if !l.split {
		l.values = append(l.values, v)
		return nil
	}
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l.values = append(l.values, p)
		}
	}
	return nil
}

// usersFileFlags adds --config and --users and resolves the users file from them.
type usersFileFlags struct{ config, users string }

func (u *usersFileFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&u.config, "config", defaultConfig, "config `FILE` whose users_file to use")
	fs.StringVar(&u.users, "users", "", "users `FILE` or s3://BUCKET/KEY to use (instead of the config's users_file)")
}

// source returns the users file: --users, else the config's users_file. An s3:// file is
// reached with the config's S3 settings (endpoint, region, the embedded endpoint's credentials),
// or with the SDK's defaults (AWS_REGION, the standard credential chain) when --users names it
// and there is no config file.
func (u *usersFileFlags) source(ctx context.Context) (users.Source, error) {
	// Only users_file and the S3 settings are needed: tolerate ${VAR}s (host keys, say) that
	// only the service's environment sets.
	cfg, err := config.Read(u.config, func(string) (string, bool) { return "", true })
	switch {
	case err == nil:
	case u.users != "" && errors.Is(err, fs.ErrNotExist):
		cfg = config.Default()
		cfg.Storage.S3.Region = "" // the environment's (AWS_REGION, shared config)
	default:
		return nil, err
	}
	location := u.users
	if location == "" {
		location = cfg.UsersFile
	}
	if location == "" {
		return nil, fmt.Errorf("%s: users_file is empty", u.config)
	}
	return app.UsersSource(ctx, cfg, location)
}
