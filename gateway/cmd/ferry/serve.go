package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ferrygw/ferry/gateway/internal/app"
	"github.com/ferrygw/ferry/gateway/internal/config"
)

// serve loads and validates the configuration, then runs the gateway until ctx ends.
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
	logger.Info("ferry starting", "version", version, "config", cfg.File())
	if err := app.Run(ctx, cfg, logger); err != nil {
		logger.Error("ferry stopped", "err", err)
		return 1
	}
	logger.Info("ferry stopped")
	return 0
}
