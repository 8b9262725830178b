package main

import (
	"strings"
	"testing"
)

// TestAdminKeyFlag: an --admin-key (or BOXOFFICE_ADMIN_KEY) shorter than 32 characters, alone or
// anywhere in a rotation list, is refused before anything starts, naming the flag and never the
// key.
func TestAdminKeyFlag(t *testing.T) {
	long := strings.Repeat("k", 32)
	for _, tc := range []struct {
		args []string
		env  string
	}{
		{args: []string{"--admin-key", "short-admin-key"}},
		{args: []string{"--admin-key", long + ",short-previous"}},
		{args: []string{"--admin-key", long + ","}},
		{env: "BOXOFFICE_ADMIN_KEY=short-admin-key"},
	} {
		code, out := serveRefusal(t, tc.args, tc.env)
		if code == 0 || !strings.Contains(out, "--admin-key") || !strings.Contains(out, "at least 32") || strings.Contains(out, "short-") {
			t.Errorf("serve %v %s: exit %d, output %q; want a failure naming --admin-key, not the key", tc.args, tc.env, code, out)
		}
	}
}

// TestAdminKeyRotation: during a rotation (--admin-key current,previous) both keys are the admin;
// after it (the previous key dropped from the list, the server restarted) the old one is 401.
func TestAdminKeyRotation(t *testing.T) {
	dir := t.TempDir()
	current, previous := "current-admin-key-0123456789abcdef", adminKey
	s := startServer(t, dir, "--admin-key", current+","+previous)
	for _, k := range []string{current, previous} {
		s.client(k).must(200, "GET", "/v1/api-keys", nil)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, dir, "--admin-key", current)
	s.client(current).must(200, "GET", "/v1/api-keys", nil)
	if r := s.client(previous).must(401, "GET", "/v1/api-keys", nil); r.code() != "unauthorized" {
		t.Errorf("the retired admin key: %s", r.Body)
	}
}
