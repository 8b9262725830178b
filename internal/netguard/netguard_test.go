package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPrivate(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"172.32.0.1", false},
		{"192.168.1.1", true},
		{"169.254.169.254", true}, // cloud metadata
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		{"100.128.0.1", false},
		{"192.0.0.8", true},
		{"198.18.0.1", true},
		{"198.19.255.255", true},
		{"198.20.0.1", false},
		{"224.0.0.1", true},
		{"239.1.2.3", true},
		{"255.255.255.255", true},
		{"240.0.0.1", true},
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"93.184.216.34", false},
		{"::1", true},
		{"::", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"ff02::1", true},
		{"ff0e::1", true},
		{"fec0::1", true},
		{"2001:4860:4860::8888", false},
		{"2606:4700:4700::1111", false},
		// IPv4-mapped IPv6 forms.
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.0.0.1", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:100.64.0.1", true},
		{"::ffff:198.18.0.1", true},
		{"::ffff:0.0.0.0", true},
		{"::ffff:255.255.255.255", true},
		{"::ffff:8.8.8.8", false},
		// NAT64 forms.
		{"64:ff9b::7f00:1", true},
		{"64:ff9b::a00:1", true},
		{"64:ff9b::808:808", false},
		{"64:ff9b:1::1", true},
		// IPv4-compatible, 6to4 and Teredo carry an IPv4 address that the network reaches.
		{"::7f00:1", true},                      // ::127.0.0.1
		{"::a00:1", true},                       // ::10.0.0.1
		{"::a9fe:a9fe", true},                   // ::169.254.169.254, the metadata service
		{"::808:808", false},                    // ::8.8.8.8
		{"2002:7f00:1::1", true},                // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", true},              // 6to4 of 192.168.1.1
		{"2002:a9fe:a9fe::1", true},             // 6to4 of 169.254.169.254
		{"2002:808:808::1", false},              // 6to4 of 8.8.8.8
		{"2001:0:808:808::80ff:fffe", true},     // Teredo, client 127.0.0.1 (inverted)
		{"2001:0:7f00:1::f7f7:f7f7", true},      // Teredo, server 127.0.0.1
		{"2001:0:808:808:0:0:f7f7:f7f7", false}, // Teredo, server and client 8.8.8.8
	} {
		ip := netip.MustParseAddr(tc.ip)
		if got := Private(ip); got != tc.want {
			t.Errorf("Private(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
	if !Private(netip.Addr{}) {
		t.Error("the zero Addr is not private; an invalid address must fail closed")
	}
}

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		url          string
		allowPrivate bool
		wantErr      string // "" = accepted
	}{
		{"https://example.com/hooks", false, ""},
		{"http://example.com:8080/hooks?x=1", false, ""},
		{"HTTPS://Example.COM/x", false, ""},
		{"https://8.8.8.8/x", false, ""},
		{"https://[2001:4860:4860::8888]:443/x", false, ""},
		{"https://example.com./x", false, ""},
		{"", false, "empty"},
		{"example.com/hooks", false, "absolute http or https"},
		{"/hooks", false, "absolute http or https"},
		{"ftp://example.com/x", false, "absolute http or https"},
		{"javascript:alert(1)", false, "absolute http or https"},
		{"file:///etc/passwd", false, "absolute http or https"},
		{"http:///x", false, "host"},
		{"http://:80/x", false, "host"},
		{"http:example.com", false, "host"},
		{"https://user:pw@example.com/x", false, "user info"},
		{"https://user@example.com/x", false, "user info"},
		{"https://example.com/x#frag", false, "fragment"},
		{"https://example.com/x#", false, "fragment"},
		{"https://exa mple.com/x", false, "valid URL"},
		{"https://" + strings.Repeat("a", 3000) + ".com/", false, "at most"},
		{"http://127.0.0.1:8080/x", false, "--webhooks-allow-private"},
		{"http://127.0.0.1:8080/x", true, ""},
		{"http://10.0.0.1/x", false, "private or loopback"},
		{"http://169.254.169.254/latest/meta-data", false, "private or loopback"},
		{"http://[::1]/x", false, "private or loopback"},
		{"http://[::ffff:127.0.0.1]/x", false, "private or loopback"},
		{"http://[fe80::1%25eth0]/x", false, "private or loopback"},
		{"http://0.0.0.0/x", false, "private or loopback"},
		{"http://localhost/x", false, "localhost"},
		{"http://LOCALHOST./x", false, "localhost"},
		{"http://api.localhost:3000/x", false, "localhost"},
		{"http://localhost/x", true, ""},
		{"http://127.1/x", false, "standard form"},
		{"http://0x7f.0.0.1/x", false, "standard form"},
		{"http://2130706433/x", false, "standard form"},
		{"http://127.1/x", true, "standard form"},
		{"http://example..com/x", false, "valid host name"},
		{"http://./x", false, "valid host name"},
	} {
		err := CheckURL(tc.url, tc.allowPrivate)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("CheckURL(%q, %v) = %v, want accepted", tc.url, tc.allowPrivate, err)
		case tc.wantErr != "" && err == nil:
			t.Errorf("CheckURL(%q, %v) accepted it, want an error with %q", tc.url, tc.allowPrivate, tc.wantErr)
		case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
			t.Errorf("CheckURL(%q, %v) = %q, want it to mention %q", tc.url, tc.allowPrivate, err, tc.wantErr)
		}
	}
}

// TestControlRefusesPrivateAtDial dials a real listener on 127.0.0.1, by address and by a DNS
// name resolving to it: both are refused unless allowPrivate.
func TestControlRefusesPrivateAtDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, host := range []string{"127.0.0.1", "localhost"} {
		addr := net.JoinHostPort(host, port)
		d := &net.Dialer{Control: Control(false)}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			t.Errorf("dial %s with Control(false) connected", addr)
		} else if !errors.Is(err, ErrPrivate) {
			t.Errorf("dial %s: %v, want an error wrapping ErrPrivate", addr, err)
		}
		d = &net.Dialer{Control: Control(true)}
		c, err = d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Errorf("dial %s with Control(true): %v", addr, err)
		} else {
			c.Close()
		}
	}
	if err := Control(false)("tcp", "8.8.8.8:443", nil); err != nil {
		t.Errorf("Control refused a public address: %v", err)
	}
	if err := Control(false)("tcp6", "[::ffff:10.0.0.1]:443", nil); !errors.Is(err, ErrPrivate) {
		t.Errorf("Control allowed a mapped private address: %v", err)
	}
	if err := Control(false)("unix", "/run/x.sock", nil); !errors.Is(err, ErrPrivate) {
		t.Errorf("Control allowed a non-IP address: %v", err)
	}
}
