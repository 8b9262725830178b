// Package netguard keeps outbound requests that a user configures (webhook endpoints) away from
// the server's own network: loopback, private and link-local addresses, cloud metadata services
// and the like. A URL is checked when it is stored (CheckURL) and every connection is checked again
// when it is dialled (Control), because a DNS name that resolved to a public address when it was
// stored may resolve to a private one later (DNS rebinding).
package netguard

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// ErrPrivate is the error, wrapped, of a refused connection to a private or loopback address.
// Callers test for it with errors.Is to tell a refusal, which no retry will cure, from a network
// failure.
var ErrPrivate = errors.New("private or loopback address refused")

// privateNets are the IPv4 and IPv6 ranges that are not the public internet, beyond the ones the
// netip predicates cover. IPv4-mapped IPv6 addresses are unmapped before the check.
var privateNets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"; 0.0.0.0 reaches the local host
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments (RFC 6890)
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking (RFC 2544)
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and 255.255.255.255 broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
}

// nat64 is the well-known NAT64 prefix (RFC 6052): its addresses carry an IPv4 address in their
// last 32 bits and reach that address through a NAT64 gateway.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// IPv6 forms that carry an IPv4 address and reach it through the IPv4 network, judged by that
// address: IPv4-compatible (::/96, deprecated, last 32 bits), 6to4 (2002::/16, bits 16–47) and
// Teredo (2001::/32: the relay server in bits 32–63, the client, inverted, in the last 32).
var (
	v4compat  = netip.MustParsePrefix("::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	teredo    = netip.MustParsePrefix("2001::/32")
)

// Private reports whether ip is not a public unicast address: loopback, RFC 1918 and fc00::/7
// private, link-local, unspecified, multicast, carrier-grade NAT, 0.0.0.0/8, 192.0.0.0/24,
// 198.18.0.0/15, 240.0.0.0/4 (reserved, with the broadcast address), and the IPv4-mapped, NAT64,
// IPv4-compatible, 6to4 and Teredo IPv6 forms of all of these. An invalid address counts as private, so that a caller fails closed.
func Private(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip) || v4compat.Contains(ip):
			return Private(netip.AddrFrom4([4]byte(b[12:])))
		case sixToFour.Contains(ip):
			return Private(netip.AddrFrom4([4]byte(b[2:6])))
		case teredo.Contains(ip):
			client := [4]byte{b[12] ^ 0xff, b[13] ^ 0xff, b[14] ^ 0xff, b[15] ^ 0xff}
			return Private(netip.AddrFrom4([4]byte(b[4:8]))) || Private(netip.AddrFrom4(client))
		}
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range privateNets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// allowFlag names the server flag that lifts the private-address refusal, for error messages.
const allowFlag = "start the server with --webhooks-allow-private to allow it"

// maxURLLen bounds a URL; a webhook URL is a partner's endpoint, not a data carrier.
const maxURLLen = 2048

// CheckURL validates a user-supplied URL that the server will send requests to. It must be an
// absolute http or https URL with a host, without user info (credentials in a URL end up in logs)
// and without a fragment (never sent, so a sign of a mistake). Unless allowPrivate, a host that is
// an IP literal in a Private range, or "localhost" or a name under ".localhost", is refused. DNS
// names are not resolved here: what they resolve to at delivery time is what matters, and Control
// checks that. The error's message is fit to show to the user.
func CheckURL(raw string, allowPrivate bool) error {
	if raw == "" {
		return errors.New("must not be empty")
	}
	if len(raw) > maxURLLen {
		return fmt.Errorf("must be at most %d characters long", maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("must be a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("must be an absolute http or https URL")
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return errors.New("must have a host")
	}
	if u.User != nil {
		return errors.New("must not contain user info (user:password@)")
	}
	if strings.Contains(raw, "#") {
		return errors.New("must not contain a fragment (#...)")
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if !allowPrivate && Private(ip) {
			return errors.New("must not point at a private or loopback address (" + allowFlag + ")")
		}
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "" || len(name) > 253 || strings.HasPrefix(name, ".") || strings.Contains(name, "..") {
		return errors.New("must have a valid host name")
	}
	// A name whose last label is a number is an IPv4 address in a non-standard form (127.1,
	// 0x7f.0.0.1, 2130706433) that some resolvers accept and that would slip past the literal
	// check above; no top-level domain is numeric (the WHATWG URL standard's rule).
	last := name[strings.LastIndexByte(name, '.')+1:]
	if isNumericLabel(last) {
		return errors.New("must have a host name or an IP address in standard form")
	}
	if !allowPrivate && (name == "localhost" || strings.HasSuffix(name, ".localhost")) {
		return errors.New("must not point at localhost (" + allowFlag + ")")
	}
	return nil
}

// isNumericLabel reports whether a host label is a decimal, octal or hexadecimal number.
func isNumericLabel(s string) bool {
	if s == "" {
		return false
	}
	if l := strings.ToLower(s); strings.HasPrefix(l, "0x") {
		for _, c := range l[2:] {
			if !strings.ContainsRune("0123456789abcdef", c) {
				return false
			}
		}
		return true
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Control returns a net.Dialer Control function that refuses, unless allowPrivate, to connect to
// a Private address. It runs after name resolution, on the address actually dialled, so a DNS name
// that resolves (or re-resolves) to a private address is refused as well. The error wraps
// ErrPrivate.
func Control(allowPrivate bool) func(network, address string, c syscall.RawConn) error {
	if allowPrivate {
		return func(string, string, syscall.RawConn) error { return nil }
	}
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			// Not an IP:port (a Unix socket, say): nothing a webhook should reach.
			return fmt.Errorf("%w: %s %s is not an IP address", ErrPrivate, network, address)
		}
		if Private(ap.Addr()) {
			return fmt.Errorf("%w: %s (%s)", ErrPrivate, ap.Addr(), allowFlag)
		}
		return nil
	}
}
