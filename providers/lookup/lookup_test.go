package lookup

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/guard"
	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

var created = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// fakeClock is Options.Now for tests that move time by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newService builds a Service for reg. o.Registry and o.Insecure default to
// a client whose guard allows reg (and extra registries) with quick retries.
func newService(t testing.TB, reg *registrytest.Registry, o Options, extra ...string) *Service {
	t.Helper()
	if o.Registry == nil {
		hosts := append([]string{reg.Host}, extra...)
		g, err := guard.New(guard.Options{Allow: hosts, Insecure: []string{reg.Host}, Private: []string{reg.Host}})
		if err != nil {
			t.Fatal(err)
		}
		c, err := registry.New(registry.Options{Guard: g, Retry: remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 2}})
		if err != nil {
			t.Fatal(err)
		}
		o.Registry = c
		o.Insecure = g.Insecure
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func checkCounts(t testing.TB, reg *registrytest.Registry, what string, want map[string]int) {
	t.Helper()
	total := 0
	for kind, n := range want {
		total += n
		if got := reg.Count(kind); got != n {
			t.Errorf("%s: registry saw %d %q, want %d", what, got, kind, n)
		}
	}
	if got := reg.Total(); got != total {
		t.Errorf("%s: registry saw %d requests in all, want %d", what, got, total)
	}
}

func checkCode(t testing.TB, what string, err error, want facts.Code) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("%s error = %v, want none", what, err)
		}
		return
	}
	if got := facts.CodeOf(err); err == nil || got != want {
		t.Fatalf("%s error = %v (code %s), want code %s", what, err, got, want)
	}
}

// waitFor polls cond every 10ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cold is what one cold lookup of a single-platform image by tag costs: the
// first sight of a tag is a GET of it, whose body is the manifest described
// (no HEAD, no GET by digest).
var cold = map[string]int{"GET manifests": 1, "GET blobs": 1}

// coldKnown is a cold lookup of a tag seen before, or of a tag+digest key
// (the tag's body is not needed): a HEAD of the tag, a GET by digest.
var coldKnown = map[string]int{"HEAD manifests": 1, "GET manifests": 1, "GET blobs": 1}

// onTag matches requests for the manifest of the tag v1 or nope, HEAD or GET.
func onTag(r *http.Request) bool {
	k := registrytest.Kind(r)
	return (k == "HEAD manifests" || k == "GET manifests") &&
		(strings.HasSuffix(r.URL.Path, "/manifests/v1") || strings.HasSuffix(r.URL.Path, "/manifests/nope"))
}

func TestSingleflight(t *testing.T) {
	reg := registrytest.New(t)
	dig := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	idx, _ := reg.PushIndex(t, "team/multi", "v1", registrytest.Image{Arch: "amd64"}, registrytest.Image{Arch: "arm64"}, registrytest.Image{Arch: "arm", Variant: "v7"})
	for _, tc := range []struct {
		desc       string
		keys       []string // callers spread over these keys
		wantDigest string
		want       map[string]int
	}{
		{desc: "tag key", keys: []string{"/team/app:v1"}, wantDigest: dig.String(), want: cold},
		{desc: "digest key", keys: []string{"/team/app@" + dig.String()}, wantDigest: dig.String(), want: map[string]int{"GET manifests": 1, "GET blobs": 1}},
		{desc: "tag and digest key", keys: []string{"/team/app:v1@" + dig.String()}, wantDigest: dig.String(), want: coldKnown},
		{
			// The tag's one resolution is a GET or a HEAD (whichever key
			// starts it), the digest's one describe a GET that may run
			// before the tag's body arrives: at most two manifest requests.
			desc: "tag, digest and tag+digest keys for one image share the describe",
			keys: []string{"/team/app:v1", "/team/app@" + dig.String(), "/team/app:v1@" + dig.String()}, wantDigest: dig.String(),
		},
		{desc: "index by tag", keys: []string{"/team/multi:v1"}, wantDigest: idx.String(), want: map[string]int{"GET manifests": 4, "GET blobs": 3}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := newService(t, reg, Options{})
			reg.ResetCounts()
			// Hold every request a little so the callers overlap in flight.
			reg.Delay(20*time.Millisecond, nil)
			t.Cleanup(func() { reg.Delay(0, nil) })
			const callers = 50
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				errs  = make(chan error, callers)
			)
			for i := range callers {
				key := reg.Host + tc.keys[i%len(tc.keys)]
				wg.Go(func() {
					<-start
					f, err := s.Facts(t.Context(), key)
					switch {
					case err != nil:
						errs <- fmt.Errorf("Facts(%q): %w", key, err)
					case f.Digest != tc.wantDigest || f.Image != key:
						errs <- fmt.Errorf("Facts(%q) = digest %s image %q, want %s %q", key, f.Digest, f.Image, tc.wantDigest, key)
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if tc.want == nil {
				m := reg.Count("HEAD manifests") + reg.Count("GET manifests")
				if m < 1 || m > 2 || reg.Count("GET blobs") != 1 || reg.Total() != m+1 {
					t.Errorf("%d concurrent lookups: %d manifest requests, %d GET blobs, %d in all; want 1 or 2, 1, and nothing else",
						callers, m, reg.Count("GET blobs"), reg.Total())
				}
				return
			}
			checkCounts(t, reg, fmt.Sprintf("%d concurrent lookups", callers), tc.want)
		})
	}
}

// holdObserver blocks the first cache miss of one cache until released, to
// reproduce a lookup that misses the cache just before another one fills it.
type holdObserver struct {
	cache   string
	held    chan struct{} // closed when the miss is being held
	release chan struct{}
	once    sync.Once
}

func (o *holdObserver) ObserveCache(cache string, hit bool) {
	if cache != o.cache || hit {
		return
	}
	first := false
	o.once.Do(func() { first = true })
	if first {
		close(o.held)
		<-o.release
	}
}

func (o *holdObserver) ObserveInFlight(int) {}

// TestLateMissDoesNotFetchAgain: a caller that misses the cache, then loses
// the CPU while another caller's fetch completes and fills the cache, must
// take the cached answer rather than start a second fetch.
func TestLateMissDoesNotFetchAgain(t *testing.T) {
	reg := registrytest.New(t)
	dig := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	for _, tc := range []struct {
		desc  string
		cache string
		key   string
	}{
		{desc: "tag cache", cache: "tag", key: "/team/app:v1"},
		{desc: "facts cache", cache: "facts", key: "/team/app:v1"},
		{desc: "facts cache, digest key", cache: "facts", key: "/team/app@" + dig.String()},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			obs := &holdObserver{cache: tc.cache, held: make(chan struct{}), release: make(chan struct{})}
			s := newService(t, reg, Options{Observer: obs})
			reg.ResetCounts()
			key := reg.Host + tc.key
			late := make(chan error, 1)
			go func() {
				_, err := s.Facts(t.Context(), key)
				late <- err
			}()
			<-obs.held
			if _, err := s.Facts(t.Context(), key); err != nil {
				t.Fatalf("Facts(%q): %v", key, err)
			}
			before := reg.Total()
			close(obs.release)
			if err := <-late; err != nil {
				t.Fatalf("late Facts(%q): %v", key, err)
			}
			if got := reg.Total(); got != before {
				t.Errorf("late Facts(%q) made %d registry requests after the answer was cached, want 0", key, got-before)
			}
		})
	}
}

func TestCache(t *testing.T) {
	reg := registrytest.New(t)
	dig := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	for _, tc := range []struct {
		desc string
		key  string
		cold map[string]int
	}{
		{desc: "tag key", key: "/team/app:v1", cold: cold},
		{desc: "digest key", key: "/team/app@" + dig.String(), cold: map[string]int{"GET manifests": 1, "GET blobs": 1}},
		{desc: "tag and digest key", key: "/team/app:v1@" + dig.String(), cold: coldKnown},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := newService(t, reg, Options{})
			key := reg.Host + tc.key
			reg.ResetCounts()
			first, err := s.Facts(t.Context(), key)
			if err != nil {
				t.Fatalf("Facts(%q): %v", key, err)
			}
			checkCounts(t, reg, "cold Facts("+key+")", tc.cold)
			reg.ResetCounts()
			second, err := s.Facts(t.Context(), key)
			if err != nil {
				t.Fatalf("Facts(%q) again: %v", key, err)
			}
			checkCounts(t, reg, "warm Facts("+key+")", map[string]int{})
			if first.Digest != dig.String() || second.Digest != first.Digest || second.Config == nil || second.Config.Created != "2024-05-06T07:08:09Z" {
				t.Errorf("Facts(%q) = %+v then %+v, want digest %s and the config", key, first, second, dig)
			}
			if second.Platforms == nil || second.Signatures == nil || second.Attestations == nil || second.VerificationErrors == nil {
				t.Errorf("Facts(%q) = %+v, want normalised (empty, non-nil) lists", key, second)
			}
		})
	}
}

func TestTagMove(t *testing.T) {
	reg := registrytest.New(t)
	old := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created, Labels: map[string]string{"v": "1"}})
	clock := newFakeClock()
	s := newService(t, reg, Options{Now: clock.Now, TagTTL: 30 * time.Second})
	key := reg.Host + "/team/app:v1"
	if f, err := s.Facts(t.Context(), key); err != nil || f.Digest != old.String() {
		t.Fatalf("Facts(%q) = %v, %v; want digest %s", key, f, err, old)
	}
	moved := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created.Add(time.Hour), Labels: map[string]string{"v": "2"}})

	for _, tc := range []struct {
		desc      string
		advance   time.Duration
		key       string
		want      v1.Hash
		wantLabel string
		want_     map[string]int
	}{
		{desc: "within the tag TTL the old digest is served from cache", advance: 29 * time.Second, key: key, want: old, wantLabel: "1", want_: map[string]int{}},
		{desc: "after the tag TTL the move is seen", advance: time.Second, key: key, want: moved, wantLabel: "2", want_: coldKnown},
		{desc: "then the new digest is cached", key: key, want: moved, wantLabel: "2", want_: map[string]int{}},
		{desc: "facts for the old digest still come from cache", key: reg.Host + "/team/app@" + old.String(), want: old, wantLabel: "1", want_: map[string]int{}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			clock.Advance(tc.advance)
			reg.ResetCounts()
			f, err := s.Facts(t.Context(), tc.key)
			if err != nil {
				t.Fatalf("Facts(%q): %v", tc.key, err)
			}
			if f.Digest != tc.want.String() || f.Config == nil || f.Config.Labels.Get("v") != tc.wantLabel {
				t.Errorf("Facts(%q) = digest %s config %+v, want %s with label v=%s", tc.key, f.Digest, f.Config, tc.want, tc.wantLabel)
			}
			checkCounts(t, reg, "Facts("+tc.key+")", tc.want_)
		})
	}
}

// TestTagDigestTagGone: repo:tag@digest whose tag is not (or no longer) in
// the registry. The digest pins what runs and exists, so the key's facts
// stand, without tagDigest; a tag that could not be looked up (429) is still
// "could not look"; a pinned digest that does not exist is not found.
func TestTagDigestTagGone(t *testing.T) {
	reg := registrytest.New(t)
	pinned := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	s := newService(t, reg, Options{})
	key := reg.Host + "/team/app:deleted@" + pinned.String()
	f, err := s.Facts(t.Context(), key)
	if err != nil {
		t.Fatalf("Facts(%q): %v, want the pinned digest's facts", key, err)
	}
	if f.Digest != pinned.String() || f.TagDigest != "" || f.Reference.Tag != "deleted" || f.Config == nil {
		t.Errorf("Facts(%q) = digest %s tagDigest %q tag %q config %v, want the pinned digest, no tagDigest", key, f.Digest, f.TagDigest, f.Reference.Tag, f.Config)
	}

	reg.Fail(func(r *http.Request) int {
		if strings.HasSuffix(r.URL.Path, "/manifests/throttled") {
			return http.StatusTooManyRequests
		}
		return 0
	})
	defer reg.Fail(nil)
	throttled := reg.Host + "/team/app:throttled@" + pinned.String()
	_, err = s.Facts(t.Context(), throttled)
	checkCode(t, "Facts("+throttled+")", err, facts.CodeUnavailable)

	missing := reg.Host + "/team/app:v1@sha256:" + strings.Repeat("0", 64)
	_, err = s.Facts(t.Context(), missing)
	checkCode(t, "Facts("+missing+")", err, facts.CodeNotFound)
}

func TestTagDigest(t *testing.T) {
	reg := registrytest.New(t)
	pinned := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created, Labels: map[string]string{"v": "1"}})
	clock := newFakeClock()
	s := newService(t, reg, Options{Now: clock.Now, TagTTL: 30 * time.Second})
	key := reg.Host + "/team/app:v1@" + pinned.String()
	var moved v1.Hash
	for _, tc := range []struct {
		desc          string
		before        func()
		wantTagDigest func() v1.Hash
		want          map[string]int
	}{
		{desc: "cold: tag digest is the pinned digest", wantTagDigest: func() v1.Hash { return pinned }, want: coldKnown},
		{
			desc: "tag re-pushed, within the TTL",
			before: func() {
				moved = reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created.Add(time.Hour), Labels: map[string]string{"v": "2"}})
				reg.ResetCounts()
				clock.Advance(10 * time.Second)
			},
			wantTagDigest: func() v1.Hash { return pinned }, want: map[string]int{},
		},
		{
			desc:          "after the TTL the tag digest moves, the pinned facts stay",
			before:        func() { clock.Advance(30 * time.Second) },
			wantTagDigest: func() v1.Hash { return moved }, want: map[string]int{"HEAD manifests": 1},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			reg.ResetCounts()
			f, err := s.Facts(t.Context(), key)
			if err != nil {
				t.Fatalf("Facts(%q): %v", key, err)
			}
			want := facts.Reference{Registry: reg.Host, Repository: "team/app", Tag: "v1", Digest: pinned.String()}
			if f.Image != key || f.Reference != want {
				t.Errorf("Facts(%q) image %q reference %+v, want %q %+v", key, f.Image, f.Reference, key, want)
			}
			if f.Digest != pinned.String() || f.Config == nil || f.Config.Labels.Get("v") != "1" {
				t.Errorf("Facts(%q) = digest %s config %+v, want the pinned %s (v=1)", key, f.Digest, f.Config, pinned)
			}
			if got := f.TagDigest; got != tc.wantTagDigest().String() {
				t.Errorf("Facts(%q).TagDigest = %s, want %s", key, got, tc.wantTagDigest())
			}
			checkCounts(t, reg, "Facts("+key+")", tc.want)
		})
	}
	// A plain tag or digest key has no TagDigest.
	for _, k := range []string{reg.Host + "/team/app:v1", reg.Host + "/team/app@" + pinned.String()} {
		f, err := s.Facts(t.Context(), k)
		if err != nil {
			t.Fatalf("Facts(%q): %v", k, err)
		}
		if f.TagDigest != "" {
			t.Errorf("Facts(%q).TagDigest = %q, want empty", k, f.TagDigest)
		}
	}
}

type countObserver struct {
	mu   sync.Mutex
	hits map[string]int
}

func (o *countObserver) ObserveCache(cache string, hit bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hits[fmt.Sprintf("%s %v", cache, hit)]++
}

func (o *countObserver) ObserveInFlight(int) {}

func TestNegativeCache(t *testing.T) {
	missing := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct {
		desc    string
		key     string // after the registry host
		fail    func(*http.Request) int
		want    facts.Code
		cached  bool           // a second call within NegativeTTL makes no request
		perCall map[string]int // registry requests of one uncached call
		// first replaces perCall for the first call (nil: perCall): the
		// first contact with the registry sends its first GET early,
		// alongside the ping, and an answer credentials might change
		// makes the usual GET as well.
		first map[string]int
		fix   func(t *testing.T, reg *registrytest.Registry)
	}{
		{
			desc: "missing tag is cached", key: "/team/app:nope", want: facts.CodeNotFound, cached: true,
			perCall: map[string]int{"GET manifests": 1},
			fix: func(t *testing.T, reg *registrytest.Registry) {
				reg.PushImage(t, "team/app", "nope", registrytest.Image{})
			},
		},
		{
			desc: "missing digest is cached", key: "/team/app@" + missing, want: facts.CodeNotFound, cached: true,
			perCall: map[string]int{"GET manifests": 1},
		},
		{
			desc: "unauthorized is cached", key: "/team/app:v1", want: facts.CodeUnauthorized, cached: true,
			fail: onTagFail(http.StatusUnauthorized),
			// The usual GET and, a 401 being what a changed auth
			// challenge causes, once more with a fresh handshake.
			first:   map[string]int{"GET manifests": 3},
			perCall: map[string]int{"GET manifests": 2},
			fix:     func(t *testing.T, reg *registrytest.Registry) { reg.Fail(nil) },
		},
		{
			desc: "server error is not cached", key: "/team/app:v1", want: facts.CodeUnavailable,
			fail:    onTagFail(http.StatusServiceUnavailable),
			first:   map[string]int{"GET manifests": 3},
			perCall: map[string]int{"GET manifests": 2},
			fix:     func(t *testing.T, reg *registrytest.Registry) { reg.Fail(nil) },
		},
		{
			desc: "throttling is not cached", key: "/team/app:v1", want: facts.CodeUnavailable,
			fail:    onTagFail(http.StatusTooManyRequests),
			first:   map[string]int{"GET manifests": 3},
			perCall: map[string]int{"GET manifests": 2},
			fix:     func(t *testing.T, reg *registrytest.Registry) { reg.Fail(nil) },
		},
		{desc: "invalid reference makes no request", key: "/team/App:v1", want: facts.CodeInvalidReference, cached: true, perCall: map[string]int{}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg := registrytest.New(t)
			reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
			clock := newFakeClock()
			obs := &countObserver{hits: map[string]int{}}
			s := newService(t, reg, Options{Now: clock.Now, NegativeTTL: 15 * time.Second, Observer: obs})
			reg.Fail(tc.fail)
			key := reg.Host + tc.key

			reg.ResetCounts()
			_, err := s.Facts(t.Context(), key)
			checkCode(t, "first Facts("+key+")", err, tc.want)
			if !strings.Contains(err.Error(), key) {
				t.Errorf("Facts(%q) error %q does not name the key", key, err)
			}
			first := tc.first
			if first == nil {
				first = tc.perCall
			}
			checkCounts(t, reg, "first Facts("+key+")", first)

			clock.Advance(14 * time.Second)
			reg.ResetCounts()
			_, err = s.Facts(t.Context(), key)
			checkCode(t, "second Facts("+key+")", err, tc.want)
			if tc.cached {
				checkCounts(t, reg, "second Facts("+key+") within NegativeTTL", map[string]int{})
			} else {
				checkCounts(t, reg, "second Facts("+key+") of a transient failure", tc.perCall)
			}

			clock.Advance(time.Second)
			reg.ResetCounts()
			_, err = s.Facts(t.Context(), key)
			checkCode(t, "Facts("+key+") after NegativeTTL", err, tc.want)
			checkCounts(t, reg, "Facts("+key+") after NegativeTTL", tc.perCall)

			if tc.fix != nil {
				tc.fix(t, reg)
				if tc.cached {
					clock.Advance(15 * time.Second)
				}
				if _, err := s.Facts(t.Context(), key); err != nil {
					t.Errorf("Facts(%q) once fixed: %v, want success", key, err)
				}
			}
		})
	}
}

// onTagFail fails requests for a tag's manifest (onTag) with code.
func onTagFail(code int) func(*http.Request) int {
	return func(r *http.Request) int {
		if onTag(r) {
			return code
		}
		return 0
	}
}

func TestNotAllowedMakesNoRequest(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/app", "v1", registrytest.Image{})
	g, err := guard.New(guard.Options{Allow: []string{"ghcr.io"}, Insecure: []string{reg.Host}, Private: []string{reg.Host}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := registry.New(registry.Options{Guard: g})
	if err != nil {
		t.Fatal(err)
	}
	s := newService(t, reg, Options{Registry: c, Insecure: g.Insecure})
	reg.ResetCounts()
	for _, tc := range []struct {
		desc string
		call func(key string) error
	}{
		{desc: "facts", call: func(key string) error { _, err := s.Facts(t.Context(), key); return err }},
		{desc: "digest", call: func(key string) error { _, err := s.Digest(t.Context(), key); return err }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			key := reg.Host + "/team/app:v1"
			checkCode(t, tc.desc+"("+key+")", tc.call(key), facts.CodeNotAllowed)
		})
	}
	if n := reg.Total() + reg.Count("GET ping"); n != 0 {
		t.Errorf("registry saw %d requests, want 0", n)
	}
}

func TestDeadline(t *testing.T) {
	// One image, pushed to a registry per subtest so the subtests (each
	// waiting out the delays) run in parallel.
	img := registrytest.Build(t, registrytest.Image{Created: created})
	dig, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc string
		key  string
		want map[string]int
	}{
		{desc: "tag key", key: "/team/app:v1", want: cold},
		{desc: "digest key", key: "/team/app@" + dig.String(), want: map[string]int{"GET manifests": 1, "GET blobs": 1}},
		{desc: "tag and digest key", key: "/team/app:v1@" + dig.String(), want: coldKnown},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			reg := registrytest.New(t)
			reg.Push(t, "team/app", "v1", img)
			s := newService(t, reg, Options{})
			reg.ResetCounts()
			reg.Delay(300*time.Millisecond, nil)
			key := reg.Host + tc.key

			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := s.Facts(ctx, key)
			checkCode(t, "Facts("+key+") with a 50ms budget", err, facts.CodeUnavailable)
			if !errors.Is(err, facts.ErrTransient) {
				t.Errorf("Facts(%q) error %v is not transient", key, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Facts(%q) with a 50ms budget took %v", key, d)
			}

			// Without asking again, the fetch carries on to the facts.
			waitFor(t, 5*time.Second, "the background fetch to read the config", func() bool { return reg.Count("GET blobs") == 1 })
			var f *facts.Facts
			waitFor(t, 5*time.Second, "the facts to be cached", func() bool {
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				defer cancel()
				f, err = s.Facts(ctx, key)
				return err == nil
			})
			if f.Digest != dig.String() || f.Config == nil {
				t.Errorf("Facts(%q) = %+v, want digest %s with a config", key, f, dig)
			}
			checkCounts(t, reg, "Facts("+key+") after the background fetch", tc.want)
		})
	}
}

func TestFetchTimeout(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	s := newService(t, reg, Options{FetchTimeout: 100 * time.Millisecond})
	reg.Delay(time.Second, onTag)
	key := reg.Host + "/team/app:v1"
	start := time.Now()
	_, err := s.Facts(t.Context(), key)
	checkCode(t, "Facts("+key+") with a slow registry", err, facts.CodeUnavailable)
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("Facts(%q) took %v, want FetchTimeout to end it", key, d)
	}
	reg.Delay(0, nil)
	if _, err := s.Facts(t.Context(), key); err != nil {
		t.Errorf("Facts(%q) once the registry is fast: %v (a timeout must not be cached)", key, err)
	}
}

func TestMaxInFlight(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/slow", "v1", registrytest.Image{Created: created})
	reg.PushImage(t, "team/fast", "v1", registrytest.Image{Created: created})
	s := newService(t, reg, Options{MaxInFlight: 1})
	reg.ResetCounts()
	reg.Delay(800*time.Millisecond, func(r *http.Request) bool {
		return onTag(r) && strings.Contains(r.URL.Path, "/team/slow/")
	})
	t.Cleanup(func() { reg.Delay(0, nil) })
	slow := make(chan error, 1)
	go func() {
		_, err := s.Facts(t.Context(), reg.Host+"/team/slow:v1")
		slow <- err
	}()
	waitFor(t, 5*time.Second, "the slow lookup to reach the registry", func() bool { return reg.Count("GET manifests") == 1 })

	fast := reg.Host + "/team/fast:v1"
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := s.Facts(ctx, fast)
	checkCode(t, "Facts("+fast+") while the only slot is taken", err, facts.CodeUnavailable)
	if n := reg.Count("GET manifests") + reg.Count("HEAD manifests"); n != 1 {
		t.Errorf("registry saw %d manifest requests while the only slot was taken, want 1", n)
	}
	if err := <-slow; err != nil {
		t.Fatalf("slow lookup: %v", err)
	}
	// The waiting fetch got the slot once it was free and warmed the cache.
	waitFor(t, 5*time.Second, "the queued lookup", func() bool {
		_, err := s.Facts(t.Context(), fast)
		return err == nil
	})
}

func TestGeneration(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	base := newService(t, reg, Options{})
	key := reg.Host + "/team/app:v1"
	services := map[uint64]*Service{}
	for _, tc := range []struct {
		desc string
		gen  uint64
		want map[string]int
	}{
		{desc: "generation 1 cold", gen: 1, want: cold},
		{desc: "generation 2 does not see generation 1's cache", gen: 2, want: cold},
		{desc: "generation 1 warm", gen: 1, want: map[string]int{}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s, ok := services[tc.gen]
			if !ok {
				s = newService(t, reg, Options{Registry: base.o.Registry, Insecure: base.o.Insecure, Generation: tc.gen})
				services[tc.gen] = s
			}
			reg.ResetCounts()
			if _, err := s.Facts(t.Context(), key); err != nil {
				t.Fatalf("Facts(%q): %v", key, err)
			}
			checkCounts(t, reg, fmt.Sprintf("generation %d Facts(%q)", tc.gen, key), tc.want)
			prefix := fmt.Sprintf("%d|", tc.gen)
			for name, keys := range map[string][]string{"tags": lruKeys(s.tags), "facts": lruKeys(s.facts)} {
				if len(keys) == 0 {
					t.Errorf("generation %d: %s cache is empty", tc.gen, name)
				}
				for _, k := range keys {
					if !strings.HasPrefix(k, prefix) {
						t.Errorf("generation %d: %s cache key %q lacks the generation prefix %q", tc.gen, name, k, prefix)
					}
				}
			}
		})
	}
}

func lruKeys[V any](c *lru[V]) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k := range c.items {
		out = append(out, k)
	}
	return out
}

func TestDigest(t *testing.T) {
	reg := registrytest.New(t)
	dig := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	hub := "sha256:" + strings.Repeat("ab", 32)
	s := newService(t, reg, Options{}, "docker.io")
	for _, tc := range []struct {
		desc       string
		key        string
		want       Pinned
		wantTag    string // Reference(true)
		wantNoTag  string // Reference(false)
		wantCounts map[string]int
		wantCode   facts.Code
	}{
		{
			desc: "digest key: no I/O", key: reg.Host + "/team/app@" + dig.String(),
			want:    Pinned{Name: reg.Host + "/team/app", Digest: dig.String()},
			wantTag: reg.Host + "/team/app@" + dig.String(), wantNoTag: reg.Host + "/team/app@" + dig.String(),
			wantCounts: map[string]int{},
		},
		{
			// The digest provider needs no manifest: a HEAD even on first
			// sight (Docker Hub counts GETs of manifests as pulls).
			desc: "tag key, first sight: one HEAD", key: reg.Host + "/team/app:v1",
			want:    Pinned{Name: reg.Host + "/team/app", Tag: "v1", Digest: dig.String()},
			wantTag: reg.Host + "/team/app:v1@" + dig.String(), wantNoTag: reg.Host + "/team/app@" + dig.String(),
			wantCounts: map[string]int{"HEAD manifests": 1, "GET manifests": 0},
		},
		{
			desc: "tag key again: cached", key: reg.Host + "/team/app:v1",
			want:    Pinned{Name: reg.Host + "/team/app", Tag: "v1", Digest: dig.String()},
			wantTag: reg.Host + "/team/app:v1@" + dig.String(), wantNoTag: reg.Host + "/team/app@" + dig.String(),
			wantCounts: map[string]int{},
		},
		{
			desc: "docker hub tag and digest: no I/O", key: "docker.io/library/nginx:1@" + hub,
			want:    Pinned{Name: "docker.io/library/nginx", Tag: "1", Digest: hub},
			wantTag: "docker.io/library/nginx:1@" + hub, wantNoTag: "docker.io/library/nginx@" + hub,
			wantCounts: map[string]int{},
		},
		{
			desc: "docker hub short name", key: "nginx:1@" + hub,
			want:    Pinned{Name: "docker.io/library/nginx", Tag: "1", Digest: hub},
			wantTag: "docker.io/library/nginx:1@" + hub, wantNoTag: "docker.io/library/nginx@" + hub,
			wantCounts: map[string]int{},
		},
		{
			desc: "docker hub alias", key: "index.docker.io/nginx@" + hub,
			want:    Pinned{Name: "docker.io/library/nginx", Digest: hub},
			wantTag: "docker.io/library/nginx@" + hub, wantNoTag: "docker.io/library/nginx@" + hub,
			wantCounts: map[string]int{},
		},
		{desc: "missing tag", key: reg.Host + "/team/app:nope", wantCode: facts.CodeNotFound, wantCounts: map[string]int{"HEAD manifests": 1, "GET manifests": 0}},
		{desc: "registry not allowed", key: "ghcr.io/acme/app:1", wantCode: facts.CodeNotAllowed, wantCounts: map[string]int{}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg.ResetCounts()
			p, err := s.Digest(t.Context(), tc.key)
			checkCode(t, "Digest("+tc.key+")", err, tc.wantCode)
			checkCounts(t, reg, "Digest("+tc.key+")", tc.wantCounts)
			if tc.wantCode != "" {
				return
			}
			if p != tc.want {
				t.Errorf("Digest(%q) = %+v, want %+v", tc.key, p, tc.want)
			}
			if got := p.Reference(true); got != tc.wantTag {
				t.Errorf("Digest(%q).Reference(true) = %q, want %q", tc.key, got, tc.wantTag)
			}
			if got := p.Reference(false); got != tc.wantNoTag {
				t.Errorf("Digest(%q).Reference(false) = %q, want %q", tc.key, got, tc.wantNoTag)
			}
		})
	}
}

func TestNewRequiresRegistry(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a registry client succeeded, want an error")
	}
}

// TestKnownTagRecheckIsHeadOnly: once a tag has been resolved, a re-check
// after TagTTL whose digest did not change is one HEAD and nothing else
// (Docker Hub counts GETs of manifests against the rate limit, not HEADs),
// through Facts and through Digest; the first sight is one GET of the tag.
func TestKnownTagRecheckIsHeadOnly(t *testing.T) {
	reg := registrytest.New(t)
	dig := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	clock := newFakeClock()
	// Unsigned facts stay cached throughout: only the tag is re-checked.
	s := newService(t, reg, Options{Now: clock.Now, TagTTL: 30 * time.Second, UnsignedTTL: time.Hour})
	key := reg.Host + "/team/app:v1"
	for i, tc := range []struct {
		desc string
		call func() (string, error)
		want map[string]int
	}{
		{desc: "first sight", want: cold},
		{desc: "re-check after TagTTL", want: map[string]int{"HEAD manifests": 1}},
		{desc: "re-check after another TagTTL", want: map[string]int{"HEAD manifests": 1}},
		{desc: "Digest re-check after TagTTL", want: map[string]int{"HEAD manifests": 1}, call: func() (string, error) {
			p, err := s.Digest(t.Context(), key)
			return p.Digest, err
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if i > 0 {
				clock.Advance(31 * time.Second)
			}
			reg.ResetCounts()
			call := tc.call
			if call == nil {
				call = func() (string, error) {
					f, err := s.Facts(t.Context(), key)
					if err != nil {
						return "", err
					}
					return f.Digest, nil
				}
			}
			got, err := call()
			if err != nil || got != dig.String() {
				t.Fatalf("%s(%q) = %s, %v; want %s", tc.desc, key, got, err, dig)
			}
			checkCounts(t, reg, tc.desc, tc.want)
			if i == 0 {
				if n := reg.CountPath("GET manifests", "/manifests/v1"); n != 1 {
					t.Errorf("first sight: %d GETs of the tag, want 1 (and none by digest)", n)
				}
			}
		})
	}
}
