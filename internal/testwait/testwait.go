// Package testwait is the one place tests wait for something that happens
// on its own time: a file event, an informer, a controller, a scrape. It
// polls with apimachinery's wait package and fails the test, naming what
// did not happen, when the timeout passes. Tests whose subject is time use
// an injected clock instead.
package testwait

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Interval is how often a condition is polled.
const Interval = 100 * time.Millisecond

// For polls cond until it holds, for at most timeout, and fails the test
// with what and cond's last error if it never does. An error from cond is
// not final: it is the reason shown if the timeout passes (a condition
// that holds ends the wait whatever error comes with it).
func For(t testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	if err := Until(context.Background(), timeout, cond); err != nil {
		t.Fatalf("%s: not within %s: %v", what, timeout, err)
	}
}

// True is For with a condition that has no error to tell.
func True(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	For(t, what, timeout, func() (bool, error) { return cond(), nil })
}

// Until polls cond every Interval until it holds or timeout passes (or
// ctx ends), for helpers that report the failure themselves. The error
// is cond's last error, if it had one.
func Until(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	return Poll(ctx, Interval, timeout, cond)
}

// Poll is Until at another interval (a start-up figure measured to 10ms).
// An error wrapped by Final ends the wait at once: the process being
// waited for exited.
func Poll(ctx context.Context, interval, timeout time.Duration, cond func() (bool, error)) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(context.Context) (bool, error) {
		ok, err := cond()
		if f, isFinal := errors.AsType[finalError](err); isFinal {
			return false, f.error
		}
		last = err
		return ok, nil
	})
	if wait.Interrupted(err) && last != nil {
		return last
	}
	return err
}

// Final marks an error that ends Poll at once.
func Final(err error) error { return finalError{err} }

type finalError struct{ error }

func (e finalError) Unwrap() error { return e.error }
