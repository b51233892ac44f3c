package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ferrygw/ferry/gateway/internal/config"
)

// serve loads and validates the configuration, then runs the gateway. The runtime is wired
// in by the integrator (package app); until then serve stops after the configuration check.
func serve(ctx context.Context, args []string, stderr io.Writer) int {
	fs := newFlags("serve", "ferry serve [--config FILE]", stderr)
	path := fs.String("config", defaultConfig, "configuration `FILE`")
	if _, code, ok := parse(fs, args, 0); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	logger := cfg.Log.NewLogger(stderr)
	_ = ctx
	err = errors.New("serve: not wired yet")
	logger.Error("ferry stopped", "err", err)
	return 1
}
