package redrive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrygw/ferry/pipeline/bus"
)

// Local redrives the embedded default's dead letters (the bus in Dir).
type Local struct {
	Dir   string   // the bus's folder, e.g. data/events
	Rules []string // only these rules' dead letters; empty: all
}

// List returns the dead letters, oldest first.
func (l Local) List() ([]Item, error) {
	if _, err := os.Stat(l.Dir); err != nil {
		return nil, fmt.Errorf("event bus folder: %w", err)
	}
	dls, err := bus.DeadLetters(l.Dir, l.Rules...)
	if err != nil {
		return nil, err
	}
	items := make([]Item, 0, len(dls))
	for _, dl := range dls {
		items = append(items, Item{From: "dead-letter/" + dl.Rule, Ref: dl.Path, Event: dl.Event, LastError: dl.LastError})
	}
	return items, nil
}

// Redrive hands every dead letter to the bus through its inbox and then removes its file; with
// dryRun it only lists them. report is called for each. It returns how many were (in a dry run:
// would be) redriven.
func (l Local) Redrive(dryRun bool, report func(Result)) (int, error) {
	items, err := l.List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, it := range items {
		r := Result{Item: it}
		if dryRun {
			n++
		} else {
			if _, err := bus.Enqueue(l.Dir, it.Event); err != nil {
				r.Err = err
			} else if err := os.Remove(it.Ref); err != nil && !errors.Is(err, os.ErrNotExist) {
				// Queued but still listed: a second redrive sends it again; the ledger absorbs it.
				r.Err = fmt.Errorf("queued, but the dead letter stays: %w", err)
			} else {
				r.Redriven = true
				n++
			}
		}
		report(r)
	}
	return n, nil
}

// Wait waits until the running bus has taken everything in its inbox, or until ctx ends. It
// reports whether the inbox is empty and whether a bus is running at all (a stopped one takes
// the inbox when it starts).
func (l Local) Wait(ctx context.Context, poll time.Duration) (taken, running bool, err error) {
	for {
		running, err = bus.Running(l.Dir)
		if err != nil || !running {
			return false, running, err
		}
		n, err := bus.Pending(l.Dir)
		if err != nil || n == 0 {
			return err == nil, true, err
		}
		select {
		case <-ctx.Done():
			return false, true, nil
		case <-time.After(poll):
		}
	}
}

// InboxDir is where queued events wait for the bus.
func (l Local) InboxDir() string { return filepath.Join(l.Dir, "inbox") }
