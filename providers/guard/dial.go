package guard

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DialContext dials addr ("host:port", as net/http passes it) only if the
// host resolves to a permitted address.
//
// The host is resolved exactly once (IP literals are not resolved). Every
// resolved address is checked; addresses that are loopback, private,
// link-local, unspecified, CGNAT, multicast, broadcast or otherwise not
// public are refused unless the host is listed in registries.private.
// Permitted addresses are dialled by IP literal, in resolver order, so the
// connection goes to an address that was checked and DNS is never consulted
// again (no rebinding window). A later permitted address is tried only if
// dialling an earlier one fails. If no address is permitted, nothing is
// dialled and an *Error is returned.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &Error{Host: addr, Reason: fmt.Sprintf("cannot be dialled over %q (only tcp)", network), dial: true}
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("guard: dial %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 || host == "" {
		return nil, fmt.Errorf("guard: dial %q: want host:port with a numeric port 1-65535", addr)
	}
	portStr = strconv.FormatUint(port, 10)
	private := g.privateDial(host, portStr)

	var (
		addrs   []netip.Addr
		literal bool
	)
	if a, err := netip.ParseAddr(host); err == nil {
		literal = true
		addrs = []netip.Addr{a.Unmap()}
	} else {
		ips, err := g.resolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("guard: resolving %q: %w", host, err)
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip.IP); ok {
				addrs = append(addrs, a.Unmap().WithZone(ip.Zone))
			}
		}
	}

	var permitted []netip.Addr
	var refused []string
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		if seen[a] || (network == "tcp4" && !a.Is4()) || (network == "tcp6" && !a.Is6()) {
			continue
		}
		seen[a] = true
		if why := forbidden(a); why != "" && !private {
			refused = append(refused, fmt.Sprintf("%s (%s)", a, why))
			continue
		}
		permitted = append(permitted, a)
	}
	if len(permitted) == 0 {
		if len(refused) == 0 {
			return nil, fmt.Errorf("guard: %q has no usable %s address", host, network)
		}
		verb := "resolves to"
		if literal {
			verb = "is"
		}
		return nil, &Error{
			Host:   privateEntry(host, portStr),
			Reason: fmt.Sprintf("%s %s; list it in registries.private to allow it", verb, strings.Join(refused, ", ")),
			dial:   true,
		}
	}

	var firstErr error
	for _, a := range permitted {
		c, err := g.dial(ctx, network, netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// privateDial reports whether host:port is covered by registries.private:
// an entry "host:port" matches exactly, an entry "host" matches the default
// ports 443 and 80.
func (g *Guard) privateDial(host, port string) bool {
	h, ok := canonicalDialHost(host)
	if !ok {
		return false
	}
	if _, ok := g.private[h+":"+port]; ok {
		return true
	}
	if port == "443" || port == "80" {
		_, ok := g.private[h]
		return ok
	}
	return false
}

// privateEntry is the registries.private entry that would allow host:port.
func privateEntry(host, port string) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == "443" || port == "80" {
		return host
	}
	return host + ":" + port
}

// canonicalDialHost puts a host from a dial address or URL (IPv6 literals
// without brackets) into the canonical form used by entry keys.
func canonicalDialHost(host string) (string, bool) {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", false // entries never carry zones
		}
		if a.Is4() {
			return a.String(), true
		}
		return "[" + a.String() + "]", true
	}
	h, err := canonicalHostname(host)
	return h, err == nil
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

var (
	nat64      = mustPrefix("64:ff9b::/96")
	sixToFour  = mustPrefix("2002::/16")
	broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

	// Ranges netip's predicates do not cover.
	extraForbidden = []struct {
		p   netip.Prefix
		why string
	}{
		{mustPrefix("0.0.0.0/8"), "this-network address"},
		{mustPrefix("100.64.0.0/10"), "shared CGNAT address"},
		{mustPrefix("240.0.0.0/4"), "reserved address"},
		{mustPrefix("::/96"), "IPv4-compatible IPv6 address"},
		{mustPrefix("fec0::/10"), "site-local address"},
	}
)

// forbidden returns why a is not a public unicast address, or "" if it is.
// IPv4-mapped addresses are unmapped and IPv4 addresses embedded in NAT64
// and 6to4 addresses are checked too.
func forbidden(a netip.Addr) string {
	a = a.WithZone("").Unmap() // Prefix.Contains is false for zoned addresses
	switch {
	case !a.IsValid():
		return "invalid address"
	case a.IsUnspecified():
		return "unspecified address"
	case a.IsLoopback():
		return "loopback address"
	case a.IsPrivate():
		return "private address"
	case a.IsLinkLocalUnicast():
		return "link-local address"
	case a == broadcast4:
		return "broadcast address"
	case a.IsMulticast():
		return "multicast address"
	}
	for _, f := range extraForbidden {
		if f.p.Contains(a) {
			return f.why
		}
	}
	if a.Is6() {
		b := a.As16()
		var v4 [4]byte
		var via string
		switch {
		case nat64.Contains(a):
			copy(v4[:], b[12:16])
			via = "NAT64"
		case sixToFour.Contains(a):
			copy(v4[:], b[2:6])
			via = "6to4"
		}
		if via != "" {
			if why := forbidden(netip.AddrFrom4(v4)); why != "" {
				return why + " via " + via
			}
		}
	}
	return ""
}
