package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// pingCache answers go-containerregistry's GET /v2/ pings from the last
// answer of the same registry (scheme and host), so that the handshake for
// a new repository (a ping, then for bearer registries a token) does not
// ask the registry again what it already said: a registry contacted before
// costs no ping round trip on a cold lookup. Concurrent pings of one
// registry share one request.
//
// A remembered answer can hide a change of the registry's auth challenge;
// Client.authRetry notices the failure such a change causes (a 401 from the
// registry, or a handshake made from a remembered answer that fails), drops the registry's answer (invalidate) and retries
// once with a fresh ping. Only 200 and 401 answers are kept, for pingTTL at
// most; errors and other statuses are answered to the requests that shared
// them and forgotten.
//
// Nothing here changes where requests go or what they carry: an answer is
// only ever used for the exact scheme://host it came from, credentials are
// attached above (go-containerregistry's auth layers, per registry host),
// and realms in a remembered challenge are validated by go-containerregistry
// and dialled through the guard as before.
type pingCache struct {
	next http.RoundTripper
	ttl  time.Duration
	max  int
	now  func() time.Time

	mu sync.Mutex
	m  map[string]*pingEntry // by scheme://host
}

const (
	pingTTL     = 10 * time.Minute
	pingMax     = 1024
	pingTimeout = 30 * time.Second
)

type pingEntry struct {
	done chan struct{} // closed once the fields below are set
	at   time.Time
	resp *http.Response // status and header; Body unused
	body []byte
	err  error
}

func newPingCache(next http.RoundTripper) *pingCache {
	return &pingCache{next: next, ttl: pingTTL, max: pingMax, now: time.Now, m: map[string]*pingEntry{}}
}

func isPing(req *http.Request) bool {
	return req.Method == http.MethodGet && (req.URL.Path == "/v2/" || req.URL.Path == "/v2")
}

func (e *pingEntry) ready() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

func (c *pingCache) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isPing(req) {
		return c.next.RoundTrip(req)
	}
	key := req.URL.Scheme + "://" + req.URL.Host
	c.mu.Lock()
	e, ok := c.m[key]
	if ok && e.ready() && c.now().Sub(e.at) >= c.ttl {
		delete(c.m, key)
		ok = false
	}
	if !ok {
		if len(c.m) >= c.max {
			clear(c.m)
		}
		e = &pingEntry{done: make(chan struct{})}
		c.m[key] = e
		go c.fetch(key, e, req)
	}
	c.mu.Unlock()
	select {
	case <-e.done:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	return &http.Response{
		Status:        e.resp.Status,
		StatusCode:    e.resp.StatusCode,
		Proto:         e.resp.Proto,
		ProtoMajor:    e.resp.ProtoMajor,
		ProtoMinor:    e.resp.ProtoMinor,
		Header:        e.resp.Header.Clone(),
		Body:          io.NopCloser(bytes.NewReader(e.body)),
		ContentLength: int64(len(e.body)),
		Request:       req,
	}, nil
}

// fetch pings for real, detached from the first caller's cancellation (the
// others share the answer), and keeps a 200 or 401 answer.
func (c *pingCache) fetch(key string, e *pingEntry, req *http.Request) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), pingTimeout)
	defer cancel()
	resp, err := c.next.RoundTrip(req.Clone(ctx))
	if err == nil {
		e.body, err = io.ReadAll(resp.Body) // bounded by the limiting transport
		resp.Body.Close()
		e.resp = &http.Response{Status: resp.Status, StatusCode: resp.StatusCode, Proto: resp.Proto, ProtoMajor: resp.ProtoMajor, ProtoMinor: resp.ProtoMinor, Header: resp.Header.Clone()}
		if err != nil {
			err = fmt.Errorf("GET %s: %w", req.URL.Redacted(), err)
		}
	}
	e.err, e.at = err, c.now()
	keep := err == nil && (e.resp.StatusCode == http.StatusOK || e.resp.StatusCode == http.StatusUnauthorized)
	c.mu.Lock()
	if !keep && c.m[key] == e {
		delete(c.m, key)
	}
	c.mu.Unlock()
	close(e.done)
}

// known reports whether an answer of host (any scheme) is remembered or
// being fetched.
func (c *pingCache) known(host string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if strings.HasSuffix(k, "://"+host) && (!e.ready() || c.now().Sub(e.at) < c.ttl) {
			return true
		}
	}
	return false
}

// invalidate forgets host's answers received before t (those a failing
// request may have relied on; a ping made since is kept).
func (c *pingCache) invalidate(host string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if strings.HasSuffix(k, "://"+host) && e.ready() && e.at.Before(t) {
			delete(c.m, k)
		}
	}
}

// authState records, for one registry operation (through its context),
// what says its failure may come from a changed auth challenge.
type authState struct {
	mu         sync.Mutex
	saw401     bool // the registry answered 401 to a /v2/<name>/ request
	apiReached bool // a /v2/<name>/ request was sent: the handshake worked
}

type authStateKey struct{}

func authStateOf(ctx context.Context) *authState {
	st, _ := ctx.Value(authStateKey{}).(*authState)
	return st
}

func (s *authState) mark(f func(*authState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// suspect reports whether a failure may come from a changed challenge: the
// registry refused a request with 401, or the operation failed before any
// request reached the registry's API (the handshake failed: a token request
// failed, a remembered realm was refused, or the ping itself failed). The
// handshake of a repository runs once for every operation waiting on it,
// under one of their contexts, so what the handshake saw is not recorded
// per operation: only whether the operation got past it.
func (s *authState) suspect() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saw401 || !s.apiReached
}

// observeAuth records what a request of kind op, and its answer (resp or
// err), say for the operation's authState.
func observeAuth(req *http.Request, op string, resp *http.Response, err error) {
	st := authStateOf(req.Context())
	if st == nil {
		return
	}
	switch op {
	case "ping", "token", "other":
	default:
		st.mark(func(s *authState) {
			s.apiReached = true
			s.saw401 = s.saw401 || (err == nil && resp.StatusCode == http.StatusUnauthorized)
		})
	}
}
