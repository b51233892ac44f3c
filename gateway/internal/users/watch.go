package users

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce is how long the folder must stay quiet after a change before the file is read:
// editors write a temporary file, rename it over the original and touch a backup, in bursts.
const watchDebounce = 200 * time.Millisecond

// Watch reloads the users file whenever it changes, until ctx is done (then it returns nil).
// It watches the file's folder, not the file: editors and config managers (and Kubernetes'
// ConfigMap symlink swap) replace the file by rename, which a watch on the file itself loses.
// A change is applied only when the content differs; an invalid file is logged with every
// problem (file:line: reason) and the previous users stay in force.
func (s *Store) Watch(ctx context.Context) error { return s.watch(ctx, nil) }

// watch is Watch with a hook called once the folder is being watched (for tests).
func (s *Store) watch(ctx context.Context, ready func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("users: watch: %w", err)
	}
	defer w.Close()
	dirs := []string{filepath.Dir(s.path)}
	if real, err := filepath.EvalSymlinks(s.path); err == nil && filepath.Dir(real) != dirs[0] {
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
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return nil
			}
			// Any event in the folder: the content comparison decides whether it was ours.
			timer.Reset(watchDebounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.logger.Warn("users file watch", "error", err)
			timer.Reset(watchDebounce) // events may have been lost: look at the file
		case <-timer.C:
			s.reloadMu.Lock()
			tried, err := s.reloadLocked(false)
			s.reloadMu.Unlock()
			if tried && err != nil {
				s.logger.Error("users file refused; the previous users stay in force", "path", s.path, "error", err)
			}
		}
	}
}
