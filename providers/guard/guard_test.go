package guard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeResolver maps host names to addresses and counts lookups.
type fakeResolver struct {
	mu    sync.Mutex
	hosts map[string][]string
	calls map[string]int
}

func newResolver(hosts map[string][]string) *fakeResolver {
	return &fakeResolver{hosts: hosts, calls: map[string]int{}}
}

func (r *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[host]++
	ips, ok := r.hosts[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []net.IPAddr
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			panic("bad test IP " + s)
		}
		out = append(out, net.IPAddr{IP: ip})
	}
	return out, nil
}

func (r *fakeResolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[host]
}

// recDialer records every dial. It never opens a connection to a
// non-loopback address: those get one end of a net.Pipe. Loopback addresses
// are dialled for real only if passLoopback is set.
type recDialer struct {
	passLoopback bool
	fail         map[string]bool // addr -> fail this dial

	mu    sync.Mutex
	addrs []string
}

func (d *recDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	d.mu.Unlock()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("fake dial: %q is not an IP:port", addr)
	}
	if d.fail[addr] {
		return nil, fmt.Errorf("fake dial: %s unreachable", addr)
	}
	if d.passLoopback && ap.Addr().IsLoopback() {
		var nd net.Dialer
		return nd.DialContext(ctx, network, addr)
	}
	c1, c2 := net.Pipe()
	c2.Close()
	return c1, nil
}

func (d *recDialer) dialled() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

func mustNew(t *testing.T, o Options) *Guard {
	t.Helper()
	g, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v) = %v, want nil", o, err)
	}
	return g
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		opts    Options
		wantErr string // substring; "" = valid
	}{
		{desc: "empty options", opts: Options{}},
		{desc: "star alone in allow", opts: Options{Allow: []string{"*"}}},
		{desc: "star with other entries", opts: Options{Allow: []string{"ghcr.io", "*"}}},
		{desc: "valid forms", opts: Options{
			Allow:    []string{"ghcr.io", "GHCR.IO", "localhost:5000", "127.0.0.1:5000", "[::1]:5000", "[::1]", "my_reg.internal", "docker.io", "r.example:65535", "r.example:1"},
			Insecure: []string{"localhost:5000", "10.0.0.5"},
			Private:  []string{"registry.internal", "[fd00::1]:443"},
		}},
		{desc: "scheme", opts: Options{Insecure: []string{"ok.example", "https://x"}},
			wantErr: `registries.insecure[1] "https://x": want host or host:port`},
		{desc: "path", opts: Options{Allow: []string{"ghcr.io/org"}},
			wantErr: `registries.allow[0] "ghcr.io/org": want host or host:port`},
		{desc: "query", opts: Options{Allow: []string{"ghcr.io?x"}},
			wantErr: `registries.allow[0] "ghcr.io?x": want host or host:port`},
		{desc: "whitespace", opts: Options{Private: []string{"a.example", "b.example "}},
			wantErr: `registries.private[1] "b.example ": want host or host:port`},
		{desc: "inner whitespace", opts: Options{Allow: []string{"a .example"}},
			wantErr: `registries.allow[0]`},
		{desc: "userinfo", opts: Options{Allow: []string{"user:pw@ghcr.io"}},
			wantErr: `registries.allow[0] "user:pw@ghcr.io": want host or host:port`},
		{desc: "empty entry", opts: Options{Allow: []string{""}},
			wantErr: `registries.allow[0] ""`},
		{desc: "empty host", opts: Options{Allow: []string{":5000"}},
			wantErr: `registries.allow[0] ":5000"`},
		{desc: "empty label", opts: Options{Allow: []string{"a..example"}},
			wantErr: `registries.allow[0]`},
		{desc: "trailing dot", opts: Options{Allow: []string{"example.com."}},
			wantErr: `registries.allow[0]`},
		{desc: "bad character", opts: Options{Allow: []string{"exa%mple.com"}},
			wantErr: `registries.allow[0]`},
		{desc: "non-ascii", opts: Options{Allow: []string{"exämple.com"}},
			wantErr: `registries.allow[0]`},
		{desc: "port zero", opts: Options{Allow: []string{"ghcr.io:0"}},
			wantErr: `registries.allow[0] "ghcr.io:0": port must be 1-65535`},
		{desc: "port too big", opts: Options{Allow: []string{"ghcr.io:65536"}},
			wantErr: `registries.allow[0] "ghcr.io:65536": port must be 1-65535`},
		{desc: "port leading zero", opts: Options{Allow: []string{"ghcr.io:0443"}},
			wantErr: `port must be 1-65535`},
		{desc: "port not numeric", opts: Options{Allow: []string{"ghcr.io:https"}},
			wantErr: `port must be 1-65535`},
		{desc: "port empty", opts: Options{Allow: []string{"ghcr.io:"}},
			wantErr: `port must be 1-65535`},
		{desc: "port signed", opts: Options{Allow: []string{"ghcr.io:+443"}},
			wantErr: `port must be 1-65535`},
		{desc: "unbracketed ipv6", opts: Options{Private: []string{"::1"}},
			wantErr: `registries.private[0] "::1"`},
		{desc: "bad ipv6 literal", opts: Options{Private: []string{"[::g]:5000"}},
			wantErr: `registries.private[0]`},
		{desc: "ipv4 in brackets", opts: Options{Private: []string{"[127.0.0.1]:5000"}},
			wantErr: `registries.private[0]`},
		{desc: "ipv6 zone", opts: Options{Private: []string{"[fe80::1%eth0]:5000"}},
			wantErr: `registries.private[0]`},
		{desc: "unterminated bracket", opts: Options{Private: []string{"[::1:5000"}},
			wantErr: `registries.private[0]`},
		{desc: "junk after bracket", opts: Options{Private: []string{"[::1]5000"}},
			wantErr: `registries.private[0]`},
		{desc: "star in insecure", opts: Options{Insecure: []string{"*"}},
			wantErr: `registries.insecure[0] "*": "*" is only allowed in registries.allow`},
		{desc: "star in private", opts: Options{Private: []string{"a.example", "*"}},
			wantErr: `registries.private[1] "*"`},
		{desc: "wildcard pattern", opts: Options{Allow: []string{"*.example.com"}},
			wantErr: `registries.allow[0] "*.example.com": "*" must be an entry on its own`},
		{desc: "star with port", opts: Options{Allow: []string{"*:443"}},
			wantErr: `registries.allow[0] "*:443"`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := New(tc.opts)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("New(%+v) = %v, want nil", tc.opts, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("New(%+v) = %v, want error containing %q", tc.opts, err, tc.wantErr)
			}
		})
	}
}

func TestCheckRegistry(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		allow    []string
		registry string
		want     bool
	}{
		{desc: "empty allowlist refuses", allow: nil, registry: "ghcr.io", want: false},
		{desc: "empty allowlist refuses docker hub", allow: nil, registry: "index.docker.io", want: false},
		{desc: "star allows", allow: []string{"*"}, registry: "evil.example", want: true},
		{desc: "star allows host:port", allow: []string{"*"}, registry: "10.0.0.1:5000", want: true},
		{desc: "star refuses invalid", allow: []string{"*"}, registry: "https://evil.example", want: false},
		{desc: "star refuses empty", allow: []string{"*"}, registry: "", want: false},
		{desc: "star is not a registry", allow: []string{"ghcr.io"}, registry: "*", want: false},
		{desc: "exact host", allow: []string{"ghcr.io"}, registry: "ghcr.io", want: true},
		{desc: "other host", allow: []string{"ghcr.io"}, registry: "evil.example", want: false},
		{desc: "suffix is not a match", allow: []string{"ghcr.io"}, registry: "evilghcr.io", want: false},
		{desc: "subdomain is not a match", allow: []string{"ghcr.io"}, registry: "x.ghcr.io", want: false},
		{desc: "host entry does not match host:port", allow: []string{"ghcr.io"}, registry: "ghcr.io:5000", want: false},
		{desc: "host:port entry does not match host", allow: []string{"ghcr.io:5000"}, registry: "ghcr.io", want: false},
		{desc: "host:port exact", allow: []string{"ghcr.io:5000"}, registry: "ghcr.io:5000", want: true},
		{desc: "host:port other port", allow: []string{"ghcr.io:5000"}, registry: "ghcr.io:5001", want: false},
		{desc: "default port is still exact", allow: []string{"ghcr.io"}, registry: "ghcr.io:443", want: false},
		{desc: "docker.io entry allows index.docker.io", allow: []string{"docker.io"}, registry: "index.docker.io", want: true},
		{desc: "docker.io entry allows registry-1", allow: []string{"docker.io"}, registry: "registry-1.docker.io", want: true},
		{desc: "index entry allows docker.io", allow: []string{"index.docker.io"}, registry: "docker.io", want: true},
		{desc: "docker hub alias keeps port exact", allow: []string{"docker.io"}, registry: "index.docker.io:443", want: false},
		{desc: "docker.io is not a wildcard", allow: []string{"docker.io"}, registry: "evil.docker.io", want: false},
		{desc: "case-insensitive registry", allow: []string{"ghcr.io"}, registry: "GHCR.IO", want: true},
		{desc: "case-insensitive entry", allow: []string{"GhCr.Io:5000"}, registry: "ghcr.io:5000", want: true},
		{desc: "ipv4 literal", allow: []string{"127.0.0.1:5000"}, registry: "127.0.0.1:5000", want: true},
		{desc: "ipv6 literal canonicalised", allow: []string{"[0:0::1]:5000"}, registry: "[::1]:5000", want: true},
		{desc: "ipv6 literal other port", allow: []string{"[::1]:5000"}, registry: "[::1]:5001", want: false},
		{desc: "invalid registry refused", allow: []string{"ghcr.io"}, registry: "ghcr.io/", want: false},
		{desc: "trailing dot refused", allow: []string{"ghcr.io"}, registry: "ghcr.io.", want: false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			g := mustNew(t, Options{Allow: tc.allow})
			err := g.CheckRegistry(tc.registry)
			if got := err == nil; got != tc.want {
				t.Fatalf("CheckRegistry(%q) = %v, want allowed=%v", tc.registry, err, tc.want)
			}
			if err == nil {
				return
			}
			var ge *Error
			if !errors.Is(err, ErrNotAllowed) || !errors.As(err, &ge) {
				t.Fatalf("CheckRegistry(%q) = %#v, want *Error wrapping ErrNotAllowed", tc.registry, err)
			}
			if ge.Host != tc.registry || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.registry)) {
				t.Errorf("CheckRegistry(%q) = %v, want it to name the registry", tc.registry, err)
			}
		})
	}
}

func TestErrorMessages(t *testing.T) {
	g := mustNew(t, Options{
		Allow:    []string{"ghcr.io"},
		Resolver: newResolver(map[string][]string{"evil.example": {"10.0.0.1"}}),
		Dial:     (&recDialer{}).dial,
	})
	for _, tc := range []struct {
		desc string
		err  error
		want string
	}{
		{
			desc: "not in allow",
			err:  g.CheckRegistry("evil.example"),
			want: `registry "evil.example" is not in registries.allow`,
		},
		{
			desc: "resolves to private",
			err:  dialErr(g, "evil.example:443"),
			want: `registry host "evil.example" resolves to 10.0.0.1 (private address); list it in registries.private to allow it`,
		},
		{
			desc: "literal on custom port",
			err:  dialErr(g, "127.0.0.1:5000"),
			want: `registry host "127.0.0.1:5000" is 127.0.0.1 (loopback address); list it in registries.private to allow it`,
		},
		{
			desc: "ipv6 literal on custom port",
			err:  dialErr(g, "[::1]:5000"),
			want: `registry host "[::1]:5000" is ::1 (loopback address); list it in registries.private to allow it`,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.err == nil || tc.err.Error() != tc.want {
				t.Errorf("error = %v, want %s", tc.err, tc.want)
			}
			if !errors.Is(tc.err, ErrNotAllowed) {
				t.Errorf("errors.Is(%v, ErrNotAllowed) = false, want true", tc.err)
			}
		})
	}
}

func dialErr(g *Guard, addr string) error {
	c, err := g.DialContext(context.Background(), "tcp", addr)
	if c != nil {
		c.Close()
	}
	return err
}

func TestInsecure(t *testing.T) {
	g := mustNew(t, Options{Insecure: []string{"localhost:5000", "registry.internal", "docker.io"}})
	for _, tc := range []struct {
		desc     string
		registry string
		want     bool
	}{
		{desc: "exact host:port", registry: "localhost:5000", want: true},
		{desc: "other port", registry: "localhost:5001", want: false},
		{desc: "host without port", registry: "localhost", want: false},
		{desc: "exact host", registry: "registry.internal", want: true},
		{desc: "case-insensitive", registry: "REGISTRY.internal", want: true},
		{desc: "host entry does not match host:port", registry: "registry.internal:5000", want: false},
		{desc: "docker hub alias", registry: "index.docker.io", want: true},
		{desc: "unlisted", registry: "ghcr.io", want: false},
		{desc: "invalid", registry: "http://localhost:5000", want: false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := g.Insecure(tc.registry); got != tc.want {
				t.Errorf("Insecure(%q) = %v, want %v", tc.registry, got, tc.want)
			}
		})
	}
}

func TestDialContextRefusesForbidden(t *testing.T) {
	forbiddenIPs := []string{
		"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", "0.0.0.0", "0.1.2.3", "::1", "fe80::1", "fc00::1", "fd00:ec2::254",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "100.64.0.1",
		"100.127.255.254", "::", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
		"ff02::1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "::127.0.0.1",
	}
	type variant struct {
		name string
		addr string
		opts func(ip string) Options
	}
	variants := []variant{
		{name: "resolved", addr: "evil.example:443"},
		{name: "literal", addr: ""},
		{name: "private lists another host", addr: "evil.example:443", opts: func(string) Options {
			return Options{Private: []string{"registry.internal", "evil.example:5000"}}
		}},
		{name: "private lists host on other port", addr: "evil.example:443", opts: func(string) Options {
			return Options{Private: []string{"evil.example:8443"}}
		}},
		{name: "host entry does not cover custom port", addr: "evil.example:5000", opts: func(string) Options {
			return Options{Private: []string{"evil.example"}}
		}},
	}
	for _, ip := range forbiddenIPs {
		for _, v := range variants {
			addr := v.addr
			if addr == "" {
				addr = net.JoinHostPort(ip, "443")
			}
			t.Run(ip+"/"+v.name, func(t *testing.T) {
				var o Options
				if v.opts != nil {
					o = v.opts(ip)
				}
				res := newResolver(map[string][]string{"evil.example": {ip}})
				d := &recDialer{}
				o.Resolver, o.Dial = res, d.dial
				g := mustNew(t, o)
				c, err := g.DialContext(context.Background(), "tcp", addr)
				if c != nil {
					c.Close()
				}
				var ge *Error
				if !errors.As(err, &ge) || !errors.Is(err, ErrNotAllowed) {
					t.Fatalf("DialContext(%q) = %v, want *Error wrapping ErrNotAllowed", addr, err)
				}
				want := netip.MustParseAddr(ip).Unmap().String()
				msg := err.Error()
				if !strings.Contains(msg, want) || !strings.Contains(msg, "registries.private") {
					t.Errorf("DialContext(%q) = %v, want message naming %s and registries.private", addr, err, want)
				}
				if got := d.dialled(); len(got) != 0 {
					t.Errorf("DialContext(%q) dialled %q, want no dial", addr, got)
				}
			})
		}
	}
}

func TestDialContextAllowed(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		private []string
		hosts   map[string][]string
		fail    map[string]bool
		network string
		addr    string
		want    []string // dialled addresses, in order
		wantErr bool
	}{
		{
			desc:  "public address",
			hosts: map[string][]string{"ghcr.io": {"140.82.112.33"}},
			addr:  "ghcr.io:443", want: []string{"140.82.112.33:443"},
		},
		{
			desc:  "mixed resolution dials only the public address",
			hosts: map[string][]string{"mixed.example": {"10.0.0.1", "93.184.216.34"}},
			addr:  "mixed.example:443", want: []string{"93.184.216.34:443"},
		},
		{
			desc:  "mixed resolution v6",
			hosts: map[string][]string{"mixed.example": {"::ffff:127.0.0.1", "fe80::1", "2606:2800:220:1:248:1893:25c8:1946"}},
			addr:  "mixed.example:443", want: []string{"[2606:2800:220:1:248:1893:25c8:1946]:443"},
		},
		{
			desc:  "4-in-6 public address dialled unmapped",
			hosts: map[string][]string{"v4.example": {"::ffff:93.184.216.34"}},
			addr:  "v4.example:80", want: []string{"93.184.216.34:80"},
		},
		{
			desc: "public ipv4 literal",
			addr: "93.184.216.34:443", want: []string{"93.184.216.34:443"},
		},
		{
			desc: "public NAT64 address",
			addr: "[64:ff9b::5db8:d822]:443", want: []string{"[64:ff9b::5db8:d822]:443"},
		},
		{
			desc:  "duplicates dialled once",
			hosts: map[string][]string{"dup.example": {"93.184.216.34", "93.184.216.34"}},
			fail:  map[string]bool{"93.184.216.34:443": true},
			addr:  "dup.example:443", want: []string{"93.184.216.34:443"}, wantErr: true,
		},
		{
			desc:  "falls back to next permitted address only",
			hosts: map[string][]string{"two.example": {"93.184.216.34", "10.0.0.1", "93.184.216.35"}},
			fail:  map[string]bool{"93.184.216.34:443": true},
			addr:  "two.example:443", want: []string{"93.184.216.34:443", "93.184.216.35:443"},
		},
		{
			desc:    "tcp4 skips v6 addresses",
			hosts:   map[string][]string{"dual.example": {"2606:2800:220:1:248:1893:25c8:1946", "93.184.216.34"}},
			network: "tcp4",
			addr:    "dual.example:443", want: []string{"93.184.216.34:443"},
		},
		{
			desc:    "private host on 443",
			private: []string{"registry.internal"},
			hosts:   map[string][]string{"registry.internal": {"127.0.0.1"}},
			addr:    "registry.internal:443", want: []string{"127.0.0.1:443"},
		},
		{
			desc:    "private host on 80",
			private: []string{"registry.internal"},
			hosts:   map[string][]string{"registry.internal": {"10.1.2.3"}},
			addr:    "registry.internal:80", want: []string{"10.1.2.3:80"},
		},
		{
			desc:    "private host is case-insensitive",
			private: []string{"Registry.Internal"},
			hosts:   map[string][]string{"REGISTRY.internal": {"192.168.0.10"}},
			addr:    "REGISTRY.internal:443", want: []string{"192.168.0.10:443"},
		},
		{
			desc:    "private host:port",
			private: []string{"registry.internal:5000"},
			hosts:   map[string][]string{"registry.internal": {"172.16.0.9"}},
			addr:    "registry.internal:5000", want: []string{"172.16.0.9:5000"},
		},
		{
			desc:    "private ipv4 literal",
			private: []string{"127.0.0.1:5000"},
			addr:    "127.0.0.1:5000", want: []string{"127.0.0.1:5000"},
		},
		{
			desc:    "private ipv6 literal",
			private: []string{"[::1]:5000"},
			addr:    "[::1]:5000", want: []string{"[::1]:5000"},
		},
		{
			desc:    "private docker hub alias",
			private: []string{"docker.io"},
			hosts:   map[string][]string{"registry-1.docker.io": {"10.9.9.9"}},
			addr:    "registry-1.docker.io:443", want: []string{"10.9.9.9:443"},
		},
		{
			desc:    "resolver failure",
			addr:    "nxdomain.example:443",
			wantErr: true,
		},
		{
			desc:    "no addresses",
			hosts:   map[string][]string{"empty.example": {}},
			addr:    "empty.example:443",
			wantErr: true,
		},
		{
			desc:    "udp refused",
			network: "udp",
			addr:    "93.184.216.34:53",
			wantErr: true,
		},
		{
			desc:    "missing port",
			addr:    "ghcr.io",
			wantErr: true,
		},
		{
			desc:    "named port",
			addr:    "93.184.216.34:https",
			wantErr: true,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			res := newResolver(tc.hosts)
			d := &recDialer{fail: tc.fail}
			g := mustNew(t, Options{Private: tc.private, Resolver: res, Dial: d.dial})
			network := tc.network
			if network == "" {
				network = "tcp"
			}
			c, err := g.DialContext(context.Background(), network, tc.addr)
			if c != nil {
				c.Close()
			}
			if (err != nil) != tc.wantErr {
				t.Errorf("DialContext(%q, %q) = %v, want error=%v", network, tc.addr, err, tc.wantErr)
			}
			if got := d.dialled(); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("DialContext(%q, %q) dialled %q, want %q", network, tc.addr, got, tc.want)
			}
			if host, _, err := net.SplitHostPort(tc.addr); err == nil {
				if n := res.count(host); n > 1 {
					t.Errorf("DialContext(%q) resolved %q %d times, want at most 1", tc.addr, host, n)
				}
			}
		})
	}
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// newCountingServer starts an httptest server on 127.0.0.1 whose listener
// counts accepted connections.
func newCountingServer(t *testing.T, tlsServer bool, h http.Handler) (*httptest.Server, *countingListener) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	cl := &countingListener{Listener: srv.Listener}
	srv.Listener = cl
	if tlsServer {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, cl
}

func get(t *testing.T, rt http.RoundTripper, url string) (string, error) {
	t.Helper()
	c := &http.Client{Transport: rt}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), err
}

var reportTLS = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.TLS != nil {
		io.WriteString(w, "https")
	} else {
		io.WriteString(w, "http")
	}
})

// TestTransportPrivateEndToEnd uses the real resolver and dialer against one
// server on 127.0.0.1: refused without registries.private (and never
// connected to), allowed with it.
func TestTransportPrivateEndToEnd(t *testing.T) {
	srv, cl := newCountingServer(t, false, reportTLS)
	hostport := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		desc    string
		private bool
		wantErr bool
	}{
		{desc: "not listed in private", private: false, wantErr: true},
		{desc: "listed in private", private: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			o := Options{Allow: []string{hostport}, Insecure: []string{hostport}}
			if tc.private {
				o.Private = []string{hostport}
			}
			g := mustNew(t, o)
			before := cl.n.Load()
			body, err := get(t, g.Transport(), srv.URL+"/v2/")
			accepted := cl.n.Load() - before
			if tc.wantErr {
				if !errors.Is(err, ErrNotAllowed) {
					t.Fatalf("GET %s = %v, want ErrNotAllowed", srv.URL, err)
				}
				if accepted != 0 {
					t.Errorf("server accepted %d connections, want 0", accepted)
				}
				return
			}
			if err != nil || body != "http" {
				t.Fatalf("GET %s = %q, %v, want \"http\", nil", srv.URL, body, err)
			}
			if accepted != 1 {
				t.Errorf("server accepted %d connections, want 1", accepted)
			}
		})
	}
}

func TestTransportSchemes(t *testing.T) {
	tlsSrv, tlsCount := newCountingServer(t, true, reportTLS)
	plainSrv, plainCount := newCountingServer(t, false, reportTLS)
	tlsHost := strings.TrimPrefix(tlsSrv.URL, "https://")
	plainHost := strings.TrimPrefix(plainSrv.URL, "http://")
	roots := x509.NewCertPool()
	roots.AddCert(tlsSrv.Certificate())

	for _, tc := range []struct {
		desc      string
		insecure  []string
		url       string
		want      string // body; "" = want error
		wantCount *countingListener
	}{
		{desc: "http to non-insecure host upgraded to https", url: "http://" + tlsHost + "/v2/", want: "https", wantCount: tlsCount},
		{desc: "https stays https", url: "https://" + tlsHost + "/v2/", want: "https", wantCount: tlsCount},
		{desc: "https to insecure host stays https", insecure: []string{tlsHost}, url: "https://" + tlsHost + "/v2/", want: "https", wantCount: tlsCount},
		{desc: "http to insecure host stays http", insecure: []string{plainHost}, url: "http://" + plainHost + "/v2/", want: "http", wantCount: plainCount},
		{desc: "http to plain server not in insecure never speaks http", url: "http://" + plainHost + "/v2/", wantCount: plainCount},
		{desc: "insecure entry for other port does not apply", insecure: []string{"127.0.0.1:1"}, url: "http://" + plainHost + "/v2/", wantCount: plainCount},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			g := mustNew(t, Options{
				Private:         []string{tlsHost, plainHost},
				Insecure:        tc.insecure,
				TLSClientConfig: &tls.Config{RootCAs: roots},
			})
			before := tc.wantCount.n.Load()
			body, err := get(t, g.Transport(), tc.url)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("GET %s = %q, want error", tc.url, body)
				}
				return
			}
			if err != nil || body != tc.want {
				t.Fatalf("GET %s = %q, %v, want %q", tc.url, body, err, tc.want)
			}
			if tc.wantCount.n.Load() == before {
				t.Errorf("GET %s: expected server accepted no connection", tc.url)
			}
		})
	}
}

func TestTransportRedirectToForbidden(t *testing.T) {
	for _, location := range []string{
		"http://metadata.test/latest/meta-data/",
		"https://metadata.test/latest/meta-data/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::ffff:169.254.169.254]/latest/meta-data/",
		"http://[fd00:ec2::254]/latest/meta-data/",
		"http://10.0.0.1:2379/v2/keys",
		"http://localhost:8080/admin",
	} {
		t.Run(location, func(t *testing.T) {
			srv, _ := newCountingServer(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, location, http.StatusFound)
			}))
			hostport := strings.TrimPrefix(srv.URL, "http://")
			d := &recDialer{passLoopback: true}
			g := mustNew(t, Options{
				Allow:    []string{hostport},
				Insecure: []string{hostport},
				Private:  []string{hostport},
				Resolver: newResolver(map[string][]string{
					"metadata.test": {"169.254.169.254"},
					"localhost":     {"127.0.0.1", "::1"},
				}),
				Dial: d.dial,
			})
			_, err := get(t, g.Transport(), srv.URL+"/v2/")
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("GET %s redirected to %s = %v, want ErrNotAllowed", srv.URL, location, err)
			}
			if got := d.dialled(); len(got) != 1 || got[0] != hostport {
				t.Errorf("dialled %q, want only %q", got, hostport)
			}
		})
	}
}

// TestTransportRedirectLoop: go-containerregistry's http.Client replaces the
// default redirect policy with an SSRF check that lets every same-host
// redirect through, uncounted; the transport stops a loop itself.
func TestTransportRedirectLoop(t *testing.T) {
	var hits atomic.Int64
	srv, _ := newCountingServer(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, fmt.Sprintf("/v2/loop?n=%d", hits.Load()), http.StatusTemporaryRedirect)
	}))
	hostport := strings.TrimPrefix(srv.URL, "http://")
	g := mustNew(t, Options{Allow: []string{hostport}, Insecure: []string{hostport}, Private: []string{hostport}})
	// Like go-containerregistry's checkRedirectSSRF for same-host hops.
	c := &http.Client{Transport: g.Transport(), CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2/", nil)
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, ErrTooManyRedirects) {
		t.Fatalf("GET %s looping = %v, want ErrTooManyRedirects", srv.URL, err)
	}
	if n := hits.Load(); n != MaxRedirects+1 {
		t.Errorf("the server saw %d requests, want %d (the request and %d redirects)", n, MaxRedirects+1, MaxRedirects)
	}
	if errors.Is(err, ErrNotAllowed) {
		t.Errorf("a redirect loop is not a refusal of the registry: %v", err)
	}
}

type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }

func TestTransportRefusesOtherSchemes(t *testing.T) {
	for _, url := range []string{"ftp://93.184.216.34/x", "file:///etc/passwd", "gopher://127.0.0.1:70/", "unix:///var/run/docker.sock"} {
		t.Run(url, func(t *testing.T) {
			d := &recDialer{}
			g := mustNew(t, Options{Allow: []string{"*"}, Dial: d.dial, Resolver: newResolver(nil)})
			body := &closeRecorder{Reader: strings.NewReader("x")}
			req, err := http.NewRequest(http.MethodPost, url, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := g.Transport().RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			if !errors.Is(err, ErrNotAllowed) {
				t.Errorf("RoundTrip(%s) = %v, want ErrNotAllowed", url, err)
			}
			if !body.closed.Load() {
				t.Errorf("RoundTrip(%s) did not close the request body", url)
			}
			if got := d.dialled(); len(got) != 0 {
				t.Errorf("RoundTrip(%s) dialled %q, want no dial", url, got)
			}
		})
	}
}

func TestTransportConfig(t *testing.T) {
	conf := &tls.Config{ServerName: "x"}
	g := mustNew(t, Options{TLSClientConfig: conf})
	if g.Transport() != g.Transport() {
		t.Errorf("Transport() returned different values, want one shared transport")
	}
	base := g.Transport().(*roundTripper).base
	for _, tc := range []struct {
		desc string
		ok   bool
	}{
		{desc: "no proxy", ok: base.Proxy == nil},
		{desc: "guarded dialer", ok: base.DialContext != nil && base.DialTLSContext == nil && base.Dial == nil && base.DialTLS == nil},
		{desc: "http2", ok: base.ForceAttemptHTTP2},
		{desc: "TLS handshake timeout", ok: base.TLSHandshakeTimeout.Seconds() == 10},
		{desc: "response header timeout", ok: base.ResponseHeaderTimeout.Seconds() == 15},
		{desc: "idle timeout", ok: base.IdleConnTimeout.Seconds() == 90},
		{desc: "idle per host", ok: base.MaxIdleConnsPerHost == 16},
		{desc: "TLS config cloned", ok: base.TLSClientConfig != conf && base.TLSClientConfig.ServerName == "x"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if !tc.ok {
				t.Errorf("Transport(): %s not configured", tc.desc)
			}
		})
	}
}

// sameRegistry is an independent oracle: a and b name the same registry if
// they are equal ignoring case, after folding Docker Hub aliases and
// canonicalising bracketed IPv6 literals.
func sameRegistry(a, b string) bool {
	norm := func(s string) string {
		s = strings.ToLower(s)
		host, port := s, ""
		if strings.HasPrefix(s, "[") {
			if i := strings.Index(s, "]"); i >= 0 {
				host, port = s[:i+1], s[i+1:]
				if ip, err := netip.ParseAddr(host[1 : len(host)-1]); err == nil {
					host = "[" + ip.String() + "]"
				}
			}
		} else if i := strings.LastIndex(s, ":"); i >= 0 {
			host, port = s[:i], s[i:]
		}
		switch host {
		case "index.docker.io", "registry-1.docker.io":
			host = "docker.io"
		}
		return host + port
	}
	return norm(a) == norm(b)
}

func FuzzCheckRegistry(f *testing.F) {
	for _, s := range [][3]string{
		{"ghcr.io", "", "ghcr.io"},
		{"ghcr.io:5000", "docker.io", "ghcr.io"},
		{"docker.io", "", "registry-1.docker.io"},
		{"[::1]:5000", "", "[0::1]:5000"},
		{"127.0.0.1:5000", "*", "10.0.0.1"},
		{"GHCR.io", "quay.io", "ghcr.IO"},
		{"a.example", "b.example", "a.example.b.example"},
		{"https://x", "", "x"},
		{"", "", ""},
		{"[::1", "*.x", "[::1]"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, e1, e2, registry string) {
		if g, err := New(Options{Insecure: []string{e1}, Private: []string{e2}}); err == nil {
			g.Insecure(registry)
			g.CheckRegistry(registry)
		}
		g, err := New(Options{Allow: []string{e1, e2}})
		if err != nil {
			return
		}
		err = g.CheckRegistry(registry)
		g.Insecure(registry)
		if err != nil {
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("CheckRegistry(%q) = %v, want error wrapping ErrNotAllowed", registry, err)
			}
			if registry == e1 || registry == e2 {
				t.Fatalf("CheckRegistry(%q) = %v, want nil (listed verbatim in %q)", registry, err, []string{e1, e2})
			}
			return
		}
		if e1 == "*" || e2 == "*" {
			return
		}
		if !sameRegistry(registry, e1) && !sameRegistry(registry, e2) {
			t.Fatalf("CheckRegistry(%q) = nil, want refusal (allow is %q)", registry, []string{e1, e2})
		}
	})
}
