package users

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ferrygw/ferry/pipeline/strictyaml"
)

// watchDebounce is how long the folder must stay quiet after a change before the file is read:
// editors write a temporary file, rename it over the original and touch a backup, in bursts.
const watchDebounce = 200 * time.Millisecond

// unloadedRetry is how often a store with no users yet (Options.AllowUnloaded) tries again when
// its poll interval is longer.
const unloadedRetry = 5 * time.Second

// Watch reloads the users file whenever it changes, until ctx is done (then it returns nil).
// A change is applied only when the content differs; an invalid file is logged with every
// problem (file:line: reason) and the previous users stay in force.
//
// A local file is watched through its folder, not the file: editors and config managers (and
// Kubernetes' ConfigMap symlink swap) replace the file by rename, which a watch on the file
// itself loses. An S3 object is polled every Options.PollInterval with HeadObject, and read
// only when its ETag is neither the one in force nor the one last refused.
func (s *Store) Watch(ctx context.Context) error { return s.watch(ctx, nil) }

// watch is Watch with a hook called once watching has started (for tests).
func (s *Store) watch(ctx context.Context, ready func()) error {
	switch src := s.src.(type) {
	case *s3Object:
		return s.poll(ctx, src, ready)
	case localFile:
		return s.watchFile(ctx, string(src), ready)
	}
	return fmt.Errorf("users: cannot watch %s (%T)", s.src, s.src)
}

func (s *Store) watchFile(ctx context.Context, path string, ready func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("users: watch: %w", err)
	}
	defer w.Close()
	dirs := []string{filepath.Dir(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("users: watch %s: %w", d, err)
		}
	}
	if ready != nil {
		ready()
	}
	return s.debounce(ctx, w.Events, w.Errors, func() {
		s.reloadMu.Lock()
		tried, err := s.reloadLocked(ctx, false)
		s.reloadMu.Unlock()
		if tried && err != nil {
			s.logger.Error("users file refused; the previous users stay in force", "path", path, "error", err)
		}
	})
}

// debounce calls reload once the folder has been quiet for watchDebounce after an event or a
// watch error (events may have been lost then: look at the file), until ctx is done or the
// watch ends. It owns no OS resource, so its timing is tested in virtual time.
func (s *Store) debounce(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error, reload func()) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				return nil
			}
			// Any event in the folder: the content comparison decides whether it was ours.
			timer.Reset(watchDebounce)
		case err, ok := <-errs:
			if !ok {
				return nil
			}
			s.logger.Warn("users file watch", "error", err)
			timer.Reset(watchDebounce)
		case <-timer.C:
			reload()
		}
	}
}

// poll checks the S3 object's ETag every PollInterval (more often while no users are loaded).
// A failed check is logged once per run of failures: S3 being away is the readiness probe's
// business, and the users in force stay.
func (s *Store) poll(ctx context.Context, o *s3Object, ready func()) error {
	if ready != nil {
		ready()
	}
	failing := false
	for {
		wait := s.opts.PollInterval
		if s.Loaded() != nil {
			wait = min(wait, unloadedRetry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		err := s.pollOnce(ctx, o)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			failing = true
			s.logger.Error("users file on S3 not checked; the users in force stay", "path", o.String(), "error", err)
		case err == nil && failing:
			failing = false
			s.logger.Info("users file on S3 reachable again", "path", o.String())
		}
	}
}

// pollOnce reloads the object if its ETag changed. A refused edit is logged here (not returned):
// it is not a failure to reach S3.
func (s *Store) pollOnce(ctx context.Context, o *s3Object) error {
	ctx, cancel := context.WithTimeout(ctx, max(10*time.Second, s.opts.PollInterval/2))
	defer cancel()
	etag, err := o.version(ctx)
	if err != nil {
		s.reloadMu.Lock()
		s.noteLoadErr(err)
		s.reloadMu.Unlock()
		return err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cur := s.cur.Load()
	if cur.loaded && etag == cur.version || etag == s.rejectedVersion {
		return nil
	}
	tried, err := s.reloadLocked(ctx, false)
	if tried && err != nil {
		if _, isProblem := errors.AsType[*strictyaml.Problem](err); isProblem {
			s.logger.Error("users file refused; the previous users stay in force", "path", o.String(), "error", err)
			return nil
		}
		return err
	}
	return nil
}
