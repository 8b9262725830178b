package checkfor

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeT records a Fatalf instead of ending the test, so the failure path can be checked.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = format
	for _, a := range args {
		if e, ok := a.(error); ok {
			f.msg += " " + e.Error()
		}
	}
}

func TestCheckForWaitsUntilNil(t *testing.T) {
	n := 0
	CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("f ran %d times, want 3", n)
	}
}

func TestCheckForReportsTheLastError(t *testing.T) {
	ft := &fakeT{TB: t}
	n := 0
	CheckFor(ft, 20*time.Millisecond, time.Millisecond, func() error {
		n++
		if n > 1 {
			return errors.New("second and later")
		}
		return errors.New("first")
	})
	if !strings.Contains(ft.msg, "second and later") {
		t.Fatalf("failure %q does not carry the last error", ft.msg)
	}
	ft = &fakeT{TB: t}
	Until(ft, 10*time.Millisecond, time.Millisecond, "the moon is blue", func() bool { return false })
	if !strings.Contains(ft.msg, "the moon is blue") {
		t.Fatalf("failure %q does not name the condition", ft.msg)
	}
}
