package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// fakeBoxoffice answers the few calls a bench run makes, each with success, and counts what it
// was sent: enough to see where bench sends what, without a store behind it.
type fakeBoxoffice struct {
	*httptest.Server
	mu        sync.Mutex
	purchases int
	other     []string // "METHOD path" of everything that is not a purchase
}

func startFakeBoxoffice(t *testing.T) *fakeBoxoffice {
	f := &fakeBoxoffice{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/purchases":
			f.purchases++
			w.WriteHeader(201)
			return
		case r.Method == "PUT":
			w.WriteHeader(201)
		case r.Method == "POST" && r.URL.Path == "/v1/api-keys":
			w.WriteHeader(201)
			fmt.Fprint(w, `{"key":"client-key"}`)
		default:
			fmt.Fprint(w, `{"tiers":[{"sold":0}]}`)
		}
		f.other = append(f.other, r.Method+" "+r.URL.Path)
	}))
	t.Cleanup(f.Close)
	return f
}

// TestBenchFlagsRefuseBadURLLists: a --url list with an empty entry, a server named twice or one
// that is not loopback is refused before anything is sent, with an error naming the problem.
func TestBenchFlagsRefuseBadURLLists(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"http://127.0.0.1:1,,http://127.0.0.1:2", "entry 2 of 3 is empty"},
		{"http://127.0.0.1:1,", "entry 2 of 2 is empty"},
		{"http://127.0.0.1:1,http://192.168.1.2:8080", "192.168.1.2 is not a loopback address; pass --allow-remote"},
		{"http://127.0.0.1:1,http://127.0.0.1:1", "listed twice"},
	} {
		var out, errOut bytes.Buffer
		err := benchCmd([]string{"--url", tc.url, "--admin-key", "k"}, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench --url %s: %v; want an error saying %q", tc.url, err, tc.want)
		}
	}
}

// TestBenchSpreadsOverURLs: `bench --url a,b,c` loads all three, sends setup and the read of what
// was sold to the first alone, and its report names every server with its share; with one URL
// the report is as it always was, without the servers line.
func TestBenchSpreadsOverURLs(t *testing.T) {
	srvs := []*fakeBoxoffice{startFakeBoxoffice(t), startFakeBoxoffice(t), startFakeBoxoffice(t)}
	list := srvs[0].URL + "," + srvs[1].URL + "," + srvs[2].URL
	var out, errOut bytes.Buffer
	err := benchCmd([]string{"--url", list, "--admin-key", "k", "--requests", "60", "--buyers", "6",
		"--retry-rate", "0", "--duration", "1m"}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, errOut.String(), out.String())
	}
	report := out.String()
	name := fmt.Sprintf("3 servers at %s, %s, %s", srvs[0].URL, srvs[1].URL, srvs[2].URL)
	if !strings.HasPrefix(report, name+"\n") || !strings.Contains(errOut.String(), "against "+name+"\n") {
		t.Errorf("the report does not name the servers:\n%s%s", errOut.String(), report)
	}
	m := regexp.MustCompile(`(?m)^  servers     (\S+) (\d+), (\S+) (\d+), (\S+) (\d+) \(`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no servers line:\n%s", report)
	}
	total := 0
	for s, f := range srvs {
		f.mu.Lock()
		if m[1+2*s] != f.URL || m[2+2*s] != fmt.Sprint(f.purchases) {
			t.Errorf("servers line says %s %s; %s got %d purchases", m[1+2*s], m[2+2*s], f.URL, f.purchases)
		}
		total += f.purchases
		if s > 0 && len(f.other) != 0 {
			t.Errorf("server %d got setup or reads: %v", s, f.other)
		}
		f.mu.Unlock()
	}
	if total != 60 || len(srvs[0].other) != 3 {
		t.Errorf("%d purchases in all, first server's other requests %v", total, srvs[0].other)
	}

	out.Reset()
	if err := benchCmd([]string{"--url", srvs[1].URL, "--admin-key", "k", "--requests", "10", "--buyers", "2",
		"--duration", "1m"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "server at "+srvs[1].URL+"\n") || strings.Contains(out.String(), "servers") {
		t.Errorf("one server's report changed:\n%s", out.String())
	}
}
