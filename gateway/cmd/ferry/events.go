package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ferrygw/ferry/pipeline/bus"
)

const defaultEventsDir = "data/events"

// events prints the embedded event bus's log as JSON lines, oldest first (what compaction has
// kept), and with --follow keeps printing new events until interrupted. It only reads, so it
// works while `ferry serve` is running.
func events(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("events", "ferry events [--dir DIR] [--follow]\n\nPrints the events recorded by the embedded event bus, one JSON object per line.", stderr)
	dir := fs.String("dir", defaultEventsDir, "event bus `DIR`ectory")
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	poll := fs.Duration("poll", 200*time.Millisecond, "how often --follow looks for new events")
	if _, code, ok := parse(fs, args, 0); !ok {
		return code
	}
	w := bufio.NewWriter(stdout)
	err := bus.Follow(ctx, *dir, *follow, *poll, func(_ uint64, ev []byte) error {
		w.Write(ev)
		w.WriteByte('\n')
		if *follow {
			return w.Flush() // a follower wants each event as it comes
		}
		return nil
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "events: %v\n", err)
		return 1
	}
	return 0
}
