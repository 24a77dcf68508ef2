// Package registrytest runs a real OCI registry (go-containerregistry's
// pkg/registry, referrers API on) in-process for tests, counts the requests it
// receives, and pushes real images and indexes to it.
//
// Fault injection (Fail, Delay) exists for the error paths a real registry
// cannot produce on demand: throttling, server errors and slowness.
package registrytest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Registry is a running registry.
type Registry struct {
	Server *httptest.Server
	// Host is host:port, the registry part of image references.
	Host string

	mu       sync.Mutex
	counts   map[string]int
	paths    map[string]int // by Kind + " " + path
	user     string
	pass     string
	bearer   bool     // RequireToken
	authz    []string // Kind and Authorization header of requests that carried one
	fail     func(*http.Request) int
	delay    time.Duration
	delayFor func(*http.Request) bool
}

// Option configures New.
type Option func(*Registry)

// WithBasicAuth requires HTTP basic credentials for every /v2/ request.
func WithBasicAuth(user, pass string) Option {
	return func(r *Registry) { r.user, r.pass = user, pass }
}

// New starts a registry over plain HTTP on 127.0.0.1 and stops it with the test.
func New(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	r := &Registry{counts: map[string]int{}, paths: map[string]int{}}
	for _, o := range opts {
		o(r)
	}
	inner := registry.New(registry.WithReferrersSupport(true), registry.Logger(nopLogger()))
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.serve(inner, w, req)
	}))
	t.Cleanup(r.Server.Close)
	r.Host = strings.TrimPrefix(r.Server.URL, "http://")
	return r
}

func (r *Registry) serve(inner http.Handler, w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.counts[Kind(req)]++
	r.paths[Kind(req)+" "+req.URL.Path]++
	fail, delay, delayFor := r.fail, r.delay, r.delayFor
	user, pass, bearer := r.user, r.pass, r.bearer
	if h := req.Header.Get("Authorization"); h != "" {
		r.authz = append(r.authz, Kind(req)+": "+h)
	}
	r.mu.Unlock()
	if req.URL.Path == "/token" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":%q}`, registryToken)
		return
	}
	if bearer && strings.HasPrefix(req.URL.Path, "/v2") && req.Header.Get("Authorization") != "Bearer "+registryToken {
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+req.Host+`/token",service="registrytest"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`)
		return
	}
	if user != "" && strings.HasPrefix(req.URL.Path, "/v2") {
		u, p, ok := req.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
	}
	if delay > 0 && (delayFor == nil || delayFor(req)) {
		select {
		case <-time.After(delay):
		case <-req.Context().Done():
			return
		}
	}
	if fail != nil {
		if code := fail(req); code != 0 {
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "1")
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"errors":[{"code":"%s","message":"injected by registrytest"}]}`, errorCode(code))
			return
		}
	}
	inner.ServeHTTP(w, req)
}

func errorCode(code int) string {
	if code == http.StatusTooManyRequests {
		return "TOOMANYREQUESTS"
	}
	return "UNAVAILABLE"
}

// Kind names a request as "<METHOD> <kind>", kind one of manifests, blobs,
// referrers, tags, ping, other: "HEAD manifests", "GET blobs".
func Kind(req *http.Request) string {
	p := req.URL.Path
	k := "other"
	switch {
	case strings.Contains(p, "/manifests/"):
		k = "manifests"
	case strings.Contains(p, "/blobs/"):
		k = "blobs"
	case strings.Contains(p, "/referrers/"):
		k = "referrers"
	case strings.HasSuffix(p, "/tags/list"):
		k = "tags"
	case p == "/v2/" || p == "/v2":
		k = "ping"
	}
	return req.Method + " " + k
}

// Count returns how many requests of kind (see Kind) were received.
func (r *Registry) Count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[kind]
}

// Total returns how many requests were received, pings excluded.
func (r *Registry) Total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.counts {
		if !strings.HasSuffix(k, " ping") {
			n += v
		}
	}
	return n
}

// ResetCounts zeroes every counter.
func (r *Registry) ResetCounts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = map[string]int{}
	r.paths = map[string]int{}
}

// registryToken is the bearer token RequireToken's token endpoint hands out.
const registryToken = "registrytest-token"

// RequireToken switches the registry to (or, false, back from) bearer
// auth: /v2/ requests without the token answer 401 with a Bearer challenge
// whose realm is GET /token on the registry itself, which hands the token
// to anyone. A change of auth challenge, at run time.
func (r *Registry) RequireToken(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bearer = on
}

// Authorizations returns, for every request that carried an Authorization
// header, its Kind and the header.
func (r *Registry) Authorizations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.authz...)
}

// CountPath returns how many requests of kind (see Kind) were received
// whose path ends with suffix: CountPath("GET manifests", "/manifests/v1").
func (r *Registry) CountPath(kind, suffix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.paths {
		if p, ok := strings.CutPrefix(k, kind+" "); ok && strings.HasSuffix(p, suffix) {
			n += v
		}
	}
	return n
}

// Fail makes the registry answer a request with the status fn returns (0 =
// serve normally). nil clears it.
func (r *Registry) Fail(fn func(*http.Request) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = fn
}

// Delay holds requests matching match (nil = all) for d before serving them.
func (r *Registry) Delay(d time.Duration, match func(*http.Request) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay, r.delayFor = d, match
}

func (r *Registry) writeOpts() []remote.Option {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.user != "" {
		return []remote.Option{remote.WithAuth(&authn.Basic{Username: r.user, Password: r.pass})}
	}
	return nil
}

// Image describes an image to push.
type Image struct {
	Created time.Time
	Labels  map[string]string
	User    string
	OS      string // default linux
	Arch    string // default amd64
	Variant string
}

// Build makes a random one-layer image with the given config.
func Build(t testing.TB, spec Image) v1.Image {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: spec.Created}
	cf.Config.Labels = spec.Labels
	cf.Config.User = spec.User
	cf.OS, cf.Architecture, cf.Variant = spec.OS, spec.Arch, spec.Variant
	if cf.OS == "" {
		cf.OS = "linux"
	}
	if cf.Architecture == "" {
		cf.Architecture = "amd64"
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Push pushes img as repo:tag (tag may be "" to push by digest only) and
// returns its digest.
func (r *Registry) Push(t testing.TB, repo, tag string, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := r.ref(t, repo, tag, d)
	if err := remote.Write(ref, img, r.writeOpts()...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return d
}

// PushImage builds and pushes an image in one step.
func (r *Registry) PushImage(t testing.TB, repo, tag string, spec Image) v1.Hash {
	t.Helper()
	return r.Push(t, repo, tag, Build(t, spec))
}

// PushIndex pushes an OCI index with one image per platform spec and returns
// the index digest and the children's digests in order.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, specs ...Image) (v1.Hash, []v1.Hash) {
	t.Helper()
	idx, children := BuildIndex(t, specs...)
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := r.ref(t, repo, tag, d)
	if err := remote.WriteIndex(ref, idx, r.writeOpts()...); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	return d, children
}

// BuildIndex makes an OCI index with one image (see Build) per platform spec
// and returns it with the children's digests in order.
func BuildIndex(t testing.TB, specs ...Image) (v1.ImageIndex, []v1.Hash) {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	var children []v1.Hash
	for _, s := range specs {
		img := Build(t, s)
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		children = append(children, d)
		os, arch := s.OS, s.Arch
		if os == "" {
			os = "linux"
		}
		if arch == "" {
			arch = "amd64"
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch, Variant: s.Variant}},
		})
	}
	return idx, children
}

func (r *Registry) ref(t testing.TB, repo, tag string, d v1.Hash) name.Reference {
	t.Helper()
	s := r.Host + "/" + repo + "@" + d.String()
	if tag != "" {
		s = r.Host + "/" + repo + ":" + tag
	}
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
