package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/ferrygw/ferry/gateway/internal/app"
	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/ftpd"
	"github.com/ferrygw/ferry/gateway/internal/hostkeys"
	"github.com/ferrygw/ferry/gateway/internal/s3keys"
	"github.com/ferrygw/ferry/gateway/internal/users"
	"github.com/ferrygw/ferry/pipeline/route"
)

// check validates everything serve would load, reporting every problem (one per line, as
// file:line: reason) rather than stopping at the first.
func check(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "ferry check [--config FILE] [--routes FILE] [--fetch-users]\n\nChecks the configuration, its users file, the host keys, the FTPS certificate and the pipeline\nroutes (embedded.pipeline.routes, or --routes: the file the Lambdas load). A users file on S3\nis read only with --fetch-users (it needs S3 and credentials; the rest is checked offline).", stderr)
	path := fs.String("config", defaultConfig, "configuration `FILE`")
	routesOnly := fs.String("routes", "", "check only this pipeline routes `FILE`")
	fetchUsers := fs.Bool("fetch-users", false, "also read a users_file on S3 (s3://…)")
	if _, code, ok := parse(fs, args, 0); !ok {
		return code
	}
	if *routesOnly != "" {
		rc, err := route.Load(*routesOnly)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "ok: %s: %d route(s)\n", *routesOnly, len(rc.Routes))
		return 0
	}
	problems := 0
	report := func(err error) {
		for line := range strings.Lines(err.Error()) {
			fmt.Fprint(stderr, strings.TrimRight(line, "\n")+"\n")
			problems++
		}
	}

	cfg, err := config.Read(*path, nil)
	if err != nil {
		report(err)
		// Go on with what can still be read (e.g. only a ${VAR} is missing).
		cfg, _ = config.Read(*path, func(string) (string, bool) { return "", true })
	}
	if cfg == nil {
		fmt.Fprintf(stderr, "check: %d problem(s)\n", problems)
		return 1
	}
	valid := false
	if err == nil {
		if err := cfg.Validate(); err != nil {
			report(err)
		} else {
			valid = true
			for _, w := range cfg.Warnings() {
				fmt.Fprintf(stderr, "warning: %s\n", w)
			}
		}
	}

	usersNote := ""
	_, _, usersOnS3 := config.ParseS3URL(cfg.UsersFile)
	switch {
	case cfg.UsersFile == "":
	case usersOnS3 && !*fetchUsers:
		usersNote = "users in " + cfg.UsersFile + " (not read: --fetch-users reads it)"
	default:
		var list []*users.User
		var warnings []string
		src, err := app.UsersSource(ctx, cfg, cfg.UsersFile)
		if err == nil {
			list, warnings, err = users.Read(ctx, src)
		}
		if err != nil {
			report(err)
		}
		for _, w := range warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		checkS3Keys(cfg, list, report, stderr)
		usersNote = fmt.Sprintf("%d user(s) in %s", len(list), cfg.UsersFile)
	}

	nKeys, generated := checkHostKeys(cfg.HostKeys, cfg.Listen.SFTP != "", report)
	if valid && (cfg.Listen.FTP != "" || cfg.Listen.FTPSImplicit != "") { // else the config's problems say it
		if err := ftpd.CheckTLS(cfg.FTP.TLS.Mode, ftpd.TLSConfig{CertFile: cfg.FTP.TLS.CertFile, KeyFile: cfg.FTP.TLS.KeyFile,
			CertPEM: cfg.FTP.TLS.CertPEM, KeyPEM: cfg.FTP.TLS.KeyPEM}); err != nil {
			report(err)
		}
	}

	nRoutes := 0
	if p := cfg.Embedded.Pipeline.Routes; p != "" {
		rc, err := route.Load(p)
		if err != nil {
			report(err)
		} else {
			nRoutes = len(rc.Routes)
		}
	}

	if problems > 0 {
		fmt.Fprintf(stderr, "check: %d problem(s)\n", problems)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %s: %s, %d host key(s)", cfg.File(), usersNote, nKeys)
	if generated > 0 {
		fmt.Fprintf(stdout, ", %d to be generated on first start", generated)
	}
	if nRoutes > 0 {
		fmt.Fprintf(stdout, ", %d pipeline route(s)", nRoutes)
	}
	fmt.Fprintln(stdout)
	return 0
}

// checkHostKeys parses the host key files that exist and the PEM text. A missing file is a
// problem only when it will not be generated.
func checkHostKeys(h config.HostKeys, sftp bool, report func(error)) (loaded, toGenerate int) {
	if !sftp {
		return 0, 0
	}
	for _, p := range h.Paths {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			if h.Generate {
				toGenerate++
			} else {
				report(fmt.Errorf("%s: host key file does not exist (and host_keys.generate is false)", p))
			}
			continue
		}
		if _, err := hostkeys.Load(hostkeys.Config{Paths: []string{p}}, nil); err != nil {
			report(err)
			continue
		}
		loaded++
	}
	if strings.TrimSpace(h.PEM) != "" {
		keys, err := hostkeys.Load(hostkeys.Config{PEM: h.PEM}, nil)
		if err != nil {
			report(err)
		}
		loaded += len(keys)
	}
	return loaded, toGenerate
}

// checkS3Keys opens every user's S3 secret with the configured key-encryption key, so a
// wrong or missing key is found before partners are refused.
func checkS3Keys(cfg *config.Config, list []*users.User, report func(error), stderr io.Writer) {
	n := 0
	for _, u := range list {
		n += len(u.S3Keys)
	}
	if n == 0 {
		return
	}
	if !cfg.Embedded.S3.Enabled() {
		fmt.Fprintf(stderr, "warning: %s: %d S3 key(s) are for the embedded S3 endpoint, which this config does not run\n", cfg.UsersFile, n)
		return
	}
	if cfg.Embedded.S3.KeyEncryptionKey == "" {
		report(fmt.Errorf("%s: %d S3 key(s) cannot be opened: embedded.s3.key_encryption_key is not set", cfg.UsersFile, n))
		return
	}
	raw, err := s3keys.ParseKEK(cfg.Embedded.S3.KeyEncryptionKey)
	if err != nil {
		report(fmt.Errorf("%s: %d S3 key(s) cannot be opened: embedded.s3.key_encryption_key: %w", cfg.UsersFile, n, err))
		return
	}
	sealer, err := s3keys.NewSealer(raw)
	if err != nil {
		report(err)
		return
	}
	for _, u := range list {
		for _, k := range u.S3Keys {
			if _, err := sealer.Open(u.Name, k.ID, k.Sealed); err != nil {
				report(fmt.Errorf("%s: user %s: S3 key %s: %w", cfg.UsersFile, u.Name, k.ID, err))
			}
		}
	}
}
