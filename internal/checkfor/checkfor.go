// Package checkfor is the one polling helper of the tests (after nats-server's checkFor): a test
// waits for a condition, bounded in time, instead of sleeping a guessed while, and a failure says
// why the condition last failed rather than only that time ran out.
package checkfor

import (
	"testing"
	"time"
)

// CheckFor calls f every `every` until it returns nil, and fails the test with f's last error
// once `wait` has passed.
func CheckFor(t testing.TB, wait, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", wait, err)
			return // for a testing.TB whose Fatalf returns
		}
		time.Sleep(every)
	}
}

// Until is CheckFor for a condition that says only whether it holds: what names it in the
// failure.
func Until(t testing.TB, wait, every time.Duration, what string, cond func() bool) {
	t.Helper()
	CheckFor(t, wait, every, func() error {
		if cond() {
			return nil
		}
		return notYet(what)
	})
}

// notYet is the error of a condition that does not hold yet.
type notYet string

func (n notYet) Error() string { return "waiting until " + string(n) }
