// Package browsertest drives a real headless chromium for the tests of the pages the server
// embeds (the console, the buyer's page): start one, run steps in it, and wait for what the page
// shows, every wait bounded in time and the browser kept to loopback.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"boxoffice/internal/checkfor"
)

// RequireEnv turns a missing chromium from a skip into a failure when it is "1" (scripts/test
// sets it once it has installed the services): CI must not pass by testing nothing.
const RequireEnv = "BOXOFFICE_REQUIRE_SERVICES"

// StepTimeout bounds one run of steps, so that a step that never happens fails where it is
// instead of at the end of the test's whole budget.
const StepTimeout = 20 * time.Second

// Chromium returns the path of Debian's chromium, or skips the test without it (fails, under
// RequireEnv=1).
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatal("chromium is not installed (apt-get install chromium), and " + RequireEnv + "=1")
	}
	t.Skip("chromium is not installed (apt-get install chromium); set " + RequireEnv + "=1 to make this a failure")
	return ""
}

// New starts a headless chromium with a profile of its own (its own cookies: two calls are two
// buyers) that may reach loopback only, and returns its tab's context, bounded by budget.
func New(t testing.TB, budget time.Duration) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1100),
		// Root in a container has no user namespace for the sandbox; the pages are our own.
		chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true),
		// Every name resolves to nothing, so the browser can reach the test server on 127.0.0.1
		// and nothing else (no update checks, no safe browsing).
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	ctx, cancel := context.WithTimeout(t.Context(), budget)
	t.Cleanup(cancel)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(alloc, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return tab
}

// Run runs the steps in the tab, failing the test at the first error.
func Run(t testing.TB, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// Value runs one action that returns a value, failing the test on an error.
func Value[T any](t testing.TB, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Eval evaluates a JavaScript expression in the page, awaiting a promise.
func Eval[T any](ctx context.Context, js string) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
}

// text is the JavaScript that reads the text of the element sel, "" when there is none.
func text(sel string) string {
	return fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)
}

// WaitText polls the page until the element sel (a CSS selector) reads want, trimmed.
func WaitText(t testing.TB, ctx context.Context, sel, want string) {
	t.Helper()
	checkfor.CheckFor(t, StepTimeout, 50*time.Millisecond, func() error {
		got, err := Eval[string](ctx, text(sel))
		if err != nil {
			return err
		}
		if strings.TrimSpace(got) != want {
			return fmt.Errorf("%s reads %q, want %q", sel, got, want)
		}
		return nil
	})
}

// WaitContains polls the page until the element sel reads something that contains want.
func WaitContains(t testing.TB, ctx context.Context, sel, want string) {
	t.Helper()
	checkfor.CheckFor(t, StepTimeout, 50*time.Millisecond, func() error {
		got, err := Eval[string](ctx, text(sel))
		if err != nil {
			return err
		}
		if !strings.Contains(got, want) {
			return fmt.Errorf("%s reads %q, want it to contain %q", sel, got, want)
		}
		return nil
	})
}

// WaitTrue polls the page until the JavaScript expression js is true; what names it in the
// failure.
func WaitTrue(t testing.TB, ctx context.Context, what, js string) {
	t.Helper()
	checkfor.CheckFor(t, StepTimeout, 50*time.Millisecond, func() error {
		ok, err := Eval[bool](ctx, js)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("waiting until %s", what)
		}
		return nil
	})
}
