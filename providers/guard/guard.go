package guard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ErrNotAllowed is wrapped by every refusal the guard returns.
var ErrNotAllowed = errors.New("registry not allowed")

// Error is a refusal to contact a registry or to dial an address.
type Error struct {
	// Host is the registry (or, for dial refusals, the registry host in the
	// form an operator would list it in registries.private).
	Host string
	// Reason completes the sentence that starts with the quoted Host.
	Reason string

	dial bool // dial refusal: message says "registry host"
}

var _ error = (*Error)(nil)

func (e *Error) Error() string {
	subject := "registry"
	if e.dial {
		subject = "registry host"
	}
	return fmt.Sprintf("%s %q %s", subject, e.Host, e.Reason)
}

// Unwrap makes errors.Is(err, ErrNotAllowed) true for every refusal.
func (e *Error) Unwrap() error { return ErrNotAllowed }

// Options configures a Guard. Entries are registries exactly as they appear
// in the registry part of an image reference: "host" or "host:port", with
// IPv6 literals in brackets ("[::1]:5000"). Hosts are case-insensitive, and
// "docker.io", "index.docker.io" and "registry-1.docker.io" all name Docker
// Hub.
type Options struct {
	// Allow lists the registries facts may come from. "*" (an entry on its
	// own) allows any registry; it must be explicit. Empty allows nothing.
	Allow []string
	// Insecure lists registries reached over plain HTTP.
	Insecure []string
	// Private lists registries that may resolve to loopback, private,
	// link-local and other non-public addresses. An entry "host" covers the
	// default ports 443 and 80; "host:port" covers exactly that port.
	Private []string

	// TLSClientConfig, if set, is cloned into Transport. Use it to add the
	// registries' extra CA (RootCAs). Nil means the system roots.
	TLSClientConfig *tls.Config

	// Resolver and Dial exist for tests. Nil means net.DefaultResolver and a
	// net.Dialer respectively. Dial is only ever called with an IP:port.
	Resolver interface {
		LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	}
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Guard enforces Options. It is safe for concurrent use.
type Guard struct {
	allowAll bool
	allow    map[string]struct{}
	insecure map[string]struct{}
	private  map[string]struct{}

	resolver interface {
		LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	}
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	rt *roundTripper
}

// New validates o and returns a Guard. An invalid entry is reported with
// its field and index, e.g. `registries.insecure[1] "https://x": want host
// or host:port (no scheme)`.
func New(o Options) (*Guard, error) {
	g := &Guard{
		allow:    map[string]struct{}{},
		insecure: map[string]struct{}{},
		private:  map[string]struct{}{},
		resolver: o.Resolver,
		dial:     o.Dial,
	}
	fields := []struct {
		name      string
		entries   []string
		set       map[string]struct{}
		allowStar bool
	}{
		{"allow", o.Allow, g.allow, true},
		{"insecure", o.Insecure, g.insecure, false},
		{"private", o.Private, g.private, false},
	}
	for _, f := range fields {
		for i, e := range f.entries {
			if strings.Contains(e, "*") {
				if !f.allowStar {
					return nil, fmt.Errorf("registries.%s[%d] %q: \"*\" is only allowed in registries.allow", f.name, i, e)
				}
				if e != "*" {
					return nil, fmt.Errorf("registries.%s[%d] %q: \"*\" must be an entry on its own (no wildcard patterns)", f.name, i, e)
				}
				g.allowAll = true
				continue
			}
			r, err := parseRegistry(e)
			if err != nil {
				return nil, fmt.Errorf("registries.%s[%d] %q: %s", f.name, i, e, err)
			}
			f.set[r.key()] = struct{}{}
		}
	}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	if g.dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		g.dial = d.DialContext
	}
	g.rt = newRoundTripper(g, o.TLSClientConfig)
	return g, nil
}

// CheckRegistry reports whether facts may come from registry (the registry
// part of an image reference). It does no I/O. It returns nil if the
// registry is allowed and an *Error otherwise. Matching is exact on host or
// host:port: "ghcr.io" does not match an entry "ghcr.io:5000" or vice versa.
func (g *Guard) CheckRegistry(registry string) error {
	r, err := parseRegistry(registry)
	if err != nil {
		return &Error{Host: registry, Reason: "is not a valid registry name: " + err.Error()}
	}
	if g.allowAll {
		return nil
	}
	if _, ok := g.allow[r.key()]; ok {
		return nil
	}
	return &Error{Host: registry, Reason: "is not in registries.allow"}
}

// Insecure reports whether registry is listed in registries.insecure and
// may therefore be reached over plain HTTP.
func (g *Guard) Insecure(registry string) bool {
	r, err := parseRegistry(registry)
	if err != nil {
		return false
	}
	_, ok := g.insecure[r.key()]
	return ok
}

// regName is a syntactically valid registry name in canonical form.
type regName struct {
	host string // lower-case; IPv6 literals bracketed; Docker Hub aliases folded
	port string // "" or decimal 1-65535 without leading zeros
}

func (r regName) key() string {
	if r.port == "" {
		return r.host
	}
	return r.host + ":" + r.port
}

// dockerHub maps Docker Hub's names to one canonical name.
var dockerHub = map[string]string{
	"docker.io":            "docker.io",
	"index.docker.io":      "docker.io",
	"registry-1.docker.io": "docker.io",
}

const wantHostPort = "want host or host:port"

// parseRegistry parses "host" or "host:port" (IPv6 literals bracketed).
func parseRegistry(s string) (regName, error) {
	switch {
	case s == "":
		return regName{}, errors.New("empty entry; " + wantHostPort)
	case strings.ContainsAny(s, " \t\r\n\v\f"):
		return regName{}, errors.New(wantHostPort + " (contains whitespace)")
	case strings.Contains(s, "://"):
		return regName{}, errors.New(wantHostPort + " (no scheme)")
	case strings.ContainsAny(s, "/?#"):
		return regName{}, errors.New(wantHostPort + " (no path)")
	case strings.Contains(s, "@"):
		return regName{}, errors.New(wantHostPort + " (no userinfo)")
	}
	var host, port string
	hasPort := false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return regName{}, errors.New(wantHostPort + " (unterminated IPv6 literal)")
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return regName{}, errors.New(wantHostPort)
			}
			port, hasPort = rest[1:], true
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return regName{}, errors.New(wantHostPort + " (invalid IPv6 literal)")
		}
		host = "[" + a.String() + "]"
	} else {
		host = s
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port, hasPort = s[:i], s[i+1:], true
			if strings.Contains(host, ":") {
				return regName{}, errors.New(wantHostPort + " (put IPv6 literals in brackets)")
			}
		}
		var err error
		if host, err = canonicalHostname(host); err != nil {
			return regName{}, err
		}
	}
	if hasPort {
		if err := validPort(port); err != nil {
			return regName{}, err
		}
	}
	return regName{host: host, port: port}, nil
}

// canonicalHostname lower-cases and validates a DNS name or IPv4 literal
// and folds Docker Hub aliases.
func canonicalHostname(host string) (string, error) {
	if host == "" {
		return "", errors.New(wantHostPort + " (empty host)")
	}
	if len(host) > 253 {
		return "", errors.New(wantHostPort + " (host too long)")
	}
	host = strings.ToLower(host)
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", fmt.Errorf("%s (invalid character %q in host)", wantHostPort, c)
		}
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" {
			return "", errors.New(wantHostPort + " (empty label in host)")
		}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.String()
	}
	if c, ok := dockerHub[host]; ok {
		host = c
	}
	return host, nil
}

func validPort(port string) error {
	const msg = "port must be 1-65535"
	if port == "" || len(port) > 5 || port[0] == '0' {
		return errors.New(msg)
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return errors.New(msg)
		}
	}
	if n, _ := strconv.Atoi(port); n > 65535 {
		return errors.New(msg)
	}
	return nil
}

// Transport returns the guarded HTTP transport. It is built once by New
// and shared by every caller, so connections are pooled.
func (g *Guard) Transport() http.RoundTripper { return g.rt }

// roundTripper enforces URL schemes on every request. Redirects followed by
// an http.Client come back through RoundTrip one hop at a time, so every
// hop is checked here and every connection is checked by Guard.DialContext.
type roundTripper struct {
	g    *Guard
	base *http.Transport
}

func newRoundTripper(g *Guard, tlsConf *tls.Config) *roundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Never use HTTP(S)_PROXY from the environment: a proxy would do the
	// DNS resolution and the connecting, bypassing DialContext's checks.
	t.Proxy = nil
	t.DialContext = g.DialContext
	t.DialTLSContext = nil
	t.ForceAttemptHTTP2 = true
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 15 * time.Second
	t.IdleConnTimeout = 90 * time.Second
	t.MaxIdleConnsPerHost = 16
	if tlsConf != nil {
		t.TLSClientConfig = tlsConf.Clone()
	}
	return &roundTripper{g: g, base: t}
}

// MaxRedirects is how many redirects one request may follow, as net/http's
// default policy allows.
const MaxRedirects = 10

// ErrTooManyRedirects is returned for a request past MaxRedirects.
var ErrTooManyRedirects = fmt.Errorf("guard: stopped after %d redirects", MaxRedirects)

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("guard: request has no URL")
	}
	// go-containerregistry replaces http.Client's redirect policy with an
	// SSRF check that allows every same-host redirect and never counts them:
	// a registry redirecting to itself kept a fetch busy (and the registry
	// hammered) until its deadline. net/http chains each hop to the redirect
	// response that caused it, so the hops are counted here.
	hops := 0
	for r := req; r.Response != nil && r.Response.Request != nil; r = r.Response.Request {
		if hops++; hops > MaxRedirects {
			closeBody(req)
			return nil, ErrTooManyRedirects
		}
	}
	scheme := strings.ToLower(req.URL.Scheme)
	switch scheme {
	case "https":
	case "http":
		// Plain HTTP only for registries.insecure. go-containerregistry
		// picks http on its own for localhost, 127.x and RFC 1918 names;
		// that must not silently downgrade a registry to cleartext, so such
		// requests are upgraded to https instead.
		if !rt.g.insecureURL(req) {
			scheme = "https"
		}
	default:
		// file:, ftp:, gopher: and friends have no business in registry
		// traffic; refuse them explicitly rather than relying on
		// http.Transport's error.
		closeBody(req)
		return nil, &Error{Host: req.URL.Host, Reason: fmt.Sprintf("cannot be fetched with URL scheme %q (want https, or http for registries.insecure)", req.URL.Scheme)}
	}
	if scheme != req.URL.Scheme {
		req = req.Clone(req.Context())
		req.URL.Scheme = scheme
	}
	return rt.base.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool.
func (rt *roundTripper) CloseIdleConnections() { rt.base.CloseIdleConnections() }

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// insecureURL reports whether the http request's host is in
// registries.insecure: exact host:port, or the bare host for port 80 or no
// port.
func (g *Guard) insecureURL(req *http.Request) bool {
	host, port := req.URL.Hostname(), req.URL.Port()
	h, ok := canonicalDialHost(host)
	if !ok {
		return false
	}
	if port != "" {
		if _, ok := g.insecure[h+":"+port]; ok {
			return true
		}
	}
	if port == "" || port == "80" {
		_, ok := g.insecure[h]
		return ok
	}
	return false
}
