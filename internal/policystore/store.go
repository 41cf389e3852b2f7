// Package policystore holds the policy in force for serve and reloads it
// when its file (a mounted ConfigMap) changes, keeping the last good
// policy when a new one fails to load.
package policystore

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"

	"github.com/promenroll/promenroll/policy"
)

// Store holds the policy in force and reloads it when its file
// changes. A file that fails to load is logged and counted, and the last
// good policy stays in force.
type Store struct {
	path    string
	opts    policy.Options
	metrics *Metrics
	current atomic.Pointer[policy.Policy]
	digest  [32]byte
	// PollInterval re-reads the file even without a file event, as a safety
	// net for volumes where inotify is unreliable.
	PollInterval time.Duration
	// watching, when set, is closed once Watch watches the directory.
	watching chan struct{}
}

// New loads the policy at path. An invalid policy is an error:
// serve refuses to start without a good one.
func New(path string, opts policy.Options, m *Metrics) (*Store, error) {
	s := &Store{path: path, opts: opts, metrics: m, PollInterval: 10 * time.Second}
	data, err := os.ReadFile(path)
	if err != nil {
		m.Reloads.WithLabelValues("error").Inc()
		return nil, err
	}
	p, err := policy.Parse(path, data, opts)
	if err != nil {
		m.Reloads.WithLabelValues("error").Inc()
		return nil, err
	}
	s.digest = sha256.Sum256(data)
	s.set(p)
	m.Reloads.WithLabelValues("success").Inc()
	return s, nil
}

// Static serves a fixed policy (tests, check).
func Static(p *policy.Policy) *Store {
	s := &Store{}
	s.current.Store(p)
	return s
}

// Policy returns the policy in force.
func (s *Store) Policy() *policy.Policy { return s.current.Load() }

func (s *Store) set(p *policy.Policy) {
	if old := s.current.Swap(p); old != nil && s.metrics != nil {
		s.metrics.Info.DeleteLabelValues(old.Generation, string(old.Source.Mode))
	}
	if s.metrics != nil {
		s.metrics.Info.WithLabelValues(p.Generation, string(p.Source.Mode)).Set(1)
	}
}

// Reload re-reads the file and swaps the policy in if it changed and is
// valid. It reports whether a new policy is in force.
func (s *Store) Reload(log logr.Logger) (bool, error) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		s.metrics.Reloads.WithLabelValues("error").Inc()
		return false, err
	}
	digest := sha256.Sum256(data)
	if digest == s.digest {
		return false, nil
	}
	p, err := policy.Parse(s.path, data, s.opts)
	if err != nil {
		// Remember the bad content so it is reported once, not every poll.
		s.digest = digest
		s.metrics.Reloads.WithLabelValues("error").Inc()
		return false, err
	}
	s.digest = digest
	// Counted before it is in force: whoever sees the new policy sees the
	// reload counted.
	s.metrics.Reloads.WithLabelValues("success").Inc()
	s.set(p)
	log.Info("policy reloaded", "path", s.path, "generation", p.Generation, "mode", p.Source.Mode, "enrollRules", len(p.Source.Enroll))
	return true, nil
}

// Watch reloads the policy on file events until ctx ends. It watches the
// directory, not the file: a ConfigMap volume updates by swapping a
// symlink (..data), which replaces the file rather than writing to it.
// It also re-reads the file every PollInterval.
func (s *Store) Watch(ctx context.Context, log logr.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		return err
	}
	if s.watching != nil {
		close(s.watching)
	}
	tick := time.NewTicker(s.PollInterval)
	defer tick.Stop()
	s.follow(ctx, log, w.Events, w.Errors, tick.C)
	return nil
}

// follow reloads on file events (debounced) and on every tick until ctx
// ends or the watcher closes.
func (s *Store) follow(ctx context.Context, log logr.Logger, events <-chan fsnotify.Event, errs <-chan error, ticks <-chan time.Time) {
	// Events come in bursts (create, chmod, rename); settle before reading.
	var debounce <-chan time.Time
	reload := func() {
		if _, err := s.Reload(log); err != nil {
			log.Error(err, "policy reload failed; the last good policy stays in force", "path", s.path)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
				debounce = time.After(100 * time.Millisecond)
			}
		case err, ok := <-errs:
			if !ok {
				return
			}
			log.Error(err, "policy file watch error; polling continues", "path", s.path)
		case <-debounce:
			debounce = nil
			reload()
		case <-ticks:
			reload()
		}
	}
}
