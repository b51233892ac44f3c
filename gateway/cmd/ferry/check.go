package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/ferrygw/ferry/gateway/internal/config"
	"github.com/ferrygw/ferry/gateway/internal/hostkeys"
	"github.com/ferrygw/ferry/gateway/internal/users"
)

// check validates everything serve would load, reporting every problem (one per line, as
// file:line: reason) rather than stopping at the first.
func check(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "ferry check [--config FILE]\n\nChecks the configuration, its users file and the host key files that exist.", stderr)
	path := fs.String("config", defaultConfig, "configuration `FILE`")
	if _, code, ok := parse(fs, args, 0); !ok {
		return code
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
	if err == nil {
		if err := cfg.Validate(); err != nil {
			report(err)
		}
	}

	nUsers := 0
	if cfg.UsersFile != "" {
		list, warnings, err := users.Load(cfg.UsersFile)
		if err != nil {
			report(err)
		}
		for _, w := range warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		nUsers = len(list)
	}

	nKeys, generated := checkHostKeys(cfg.HostKeys, cfg.Listen.SFTP != "", report)

	if problems > 0 {
		fmt.Fprintf(stderr, "check: %d problem(s)\n", problems)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %s: %d user(s) in %s, %d host key(s)", cfg.File(), nUsers, cfg.UsersFile, nKeys)
	if generated > 0 {
		fmt.Fprintf(stdout, ", %d to be generated on first start", generated)
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
