// Package mailtest reads what the server mailed, for tests: the shop's sign-in codes, written as
// .eml files into a mail directory like every notice.
package mailtest

import (
	"bytes"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// codeInSubject is the code at the end of a sign-in mail's subject ("Your sign-in code: 123456").
var codeInSubject = regexp.MustCompile(`code: ([0-9]{6})$`)

// SignInCodes returns the sign-in codes mailed to email in dir so far, by the name of their file.
// Notices are the ntc_ files; one to email whose subject carries no code fails the test.
func SignInCodes(t testing.TB, dir, email string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]string{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "ntc_") || !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if msg.Header.Get("To") != email {
			continue
		}
		m := codeInSubject.FindStringSubmatch(msg.Header.Get("Subject"))
		if m == nil {
			t.Fatalf("%s has no code in its subject %q", e.Name(), msg.Header.Get("Subject"))
		}
		codes[e.Name()] = m[1]
	}
	return codes
}
