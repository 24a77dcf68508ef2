package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
	"github.com/imagegate/imagegate/server/config"
)

// Registry faults, through the real server in front of a real in-process
// registry. The faults are injected by a reverse proxy
// (registrytest.FaultProxy) between the two because a real registry cannot
// produce them on demand: being down, slowness, throttling, 5xx, truncated,
// wrong and oversized bodies, endless referrer listings, redirect loops, and
// redirects or token realms that point at addresses imagegate must never
// contact (a counting listener, registrytest.Sink, stands there).
//
// For every fault: the answer is a per-key error with the right stable code
// (definitive) or the key left out with a systemError (transient), within
// the budget plus slack; nothing wrong is cached — once the fault is cleared
// (for a definitive answer: and cache.negativeTTL has passed) the answers are
// transient at most until a fetch still running in the background ends, then
// the correct facts, and a transient fault is looked up again; huge bodies
// are not read much past the limit.
//
// Which is which:
//   - transient ("could not look"): down, reset, slower than the budget, 429
//     (Retry-After is not waited for past the budget), 5xx, truncated bodies,
//     content that does not match its digest, a body larger than its
//     descriptor declares (config, platform manifest, signature blobs: the
//     same fault as a digest mismatch), a redirect loop;
//   - invalid_content: a manifest fetched by digest or a referrers listing
//     larger than the limit (no declared size to tell a lie from a real
//     oversized object);
//   - registry_not_allowed: a redirect or a token realm to an address the
//     guard refuses, whether go-containerregistry or the guard's dialer
//     refuses it.

const (
	faultBudget = time.Second
	// faultSlack is what the request may take beyond the budget: TLS, JSON and
	// a loaded 2-core machine under -race. A correctness bound, not a
	// performance one.
	faultSlack      = 1500 * time.Millisecond
	faultFetch      = 2 * time.Second // limits.fetchTimeout
	faultNegative   = 200 * time.Millisecond
	faultManifest   = 1 << 20
	faultConfig     = 256 << 10
	faultBundle     = 256 << 10
	faultReferrers  = 16
	faultHugeStream = 256 << 20
)

type faultEnv struct {
	reg  *registrytest.Registry
	px   *registrytest.FaultProxy
	sink *registrytest.Sink
	h    *harness
	ss   *signaturetest.Sigstore
	id   signaturetest.Identity
}

func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	reg := registrytest.New(t)
	e := &faultEnv{
		reg:  reg,
		px:   registrytest.NewFaultProxy(t, reg),
		sink: registrytest.NewSink(t),
		ss:   signaturetest.NewSigstore(t),
		id:   signaturetest.Identity{Issuer: "https://token.actions.githubusercontent.com", Subject: "https://github.com/team/app/.github/workflows/release.yml@refs/tags/v1"},
	}
	rootFile := e.ss.WriteTrustedRoot(t, t.TempDir())
	e.h = start(t, reg, func(c *config.Config) {
		// Only the proxy is allowed (and may be on loopback): the registry
		// behind it and the sink are not.
		c.Registries.Allow = []string{e.px.Host}
		c.Registries.Insecure = []string{e.px.Host}
		c.Registries.Private = []string{e.px.Host}
		c.Budget = config.Duration(faultBudget)
		c.Limits.FetchTimeout = config.Duration(faultFetch)
		c.Cache.NegativeTTL = config.Duration(faultNegative)
		c.Limits.ManifestBytes = faultManifest
		c.Limits.ConfigBytes = faultConfig
		c.Limits.BundleBytes = faultBundle
		c.Limits.MaxReferrers = faultReferrers
		c.Trust.TrustedRoots = map[string]string{"test": rootFile}
	})
	return e
}

// faultImage is an image pushed to the registry, signed twice by the test
// Sigstore: a bundle attached as an OCI referrer and a legacy .sig tag.
type faultImage struct {
	repo     string
	digest   v1.Hash
	config   v1.Hash // config blob
	bundle   v1.Hash // the referrer's bundle blob
	referrer v1.Hash // the referrer manifest
	payload  v1.Hash // the legacy .sig layer blob
	key      string  // proxy/repo@digest
	tagKey   string  // proxy/repo:v1
}

func (e *faultEnv) push(t *testing.T, repo string) faultImage {
	t.Helper()
	img := registrytest.Build(t, registrytest.Image{Created: created, Labels: map[string]string{"case": repo}})
	d := e.reg.Push(t, repo, "v1", img)
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	bundle := e.ss.SignImage(t, e.id, d.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{})
	ref := signaturetest.AttachReferrer(t, e.reg.Host, repo, subject(t, e.reg, repo, d), bundle, signature.CosignSignPredicate)
	payload := signaturetest.SimpleSigningPayload(e.px.Host+"/"+repo, d.String())
	signaturetest.PushLegacySignatures(t, e.reg.Host, repo, d.String(), e.ss.SignLegacy(t, e.id, payload, signaturetest.LegacyOptions{}))
	return faultImage{
		repo: repo, digest: d, config: cfg, bundle: faultSHA(bundle), referrer: ref, payload: faultSHA(payload),
		key:    e.px.Host + "/" + repo + "@" + d.String(),
		tagKey: e.px.Host + "/" + repo + ":v1",
	}
}

func faultSHA(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

// facts posts a facts request and checks it came back within the budget.
func (e *faultEnv) facts(t *testing.T, keys ...string) response {
	t.Helper()
	return e.timed(t, "/v1/externaldata/facts", keys...)
}

func (e *faultEnv) timed(t *testing.T, path string, keys ...string) response {
	t.Helper()
	begin := time.Now()
	status, r := e.h.post(t, path, providerRequest(keys...))
	if took := time.Since(begin); took > faultBudget+faultSlack {
		t.Errorf("POST %s took %v, more than the budget %v + %v", path, took, faultBudget, faultSlack)
	}
	if status != http.StatusOK {
		t.Fatalf("POST %s: status %d, want 200: %+v", path, status, r)
	}
	return r
}

// wantFaultFacts checks the full, correct facts of im (both signatures verified).
func wantFaultFacts(t *testing.T, r response, im faultImage) {
	t.Helper()
	if r.Response.SystemError != "" || len(r.Response.Items) != 1 {
		t.Fatalf("want facts for %s, got systemError %q items %+v", im.key, r.Response.SystemError, r.Response.Items)
	}
	f := factsOf(t, r, 0)
	if f.Digest != im.digest.String() || f.Config == nil || f.Config.Labels.Get("case") != im.repo || f.Config.Digest != im.config.String() {
		t.Errorf("facts: digest %s config %+v, want %s with label case=%s", f.Digest, f.Config, im.digest, im.repo)
	}
	formats := map[string]bool{}
	for _, s := range f.Signatures {
		formats[s.Format] = true
	}
	if len(f.Signatures) != 2 || !formats["bundle"] || !formats["legacy"] {
		t.Errorf("facts: signatures %+v (errors %q), want the bundle and the legacy signature", f.Signatures, f.VerificationErrors)
	}
}

// wantFaultTransient checks that key is left out and systemError names it and
// every one of want.
func wantFaultTransient(t *testing.T, r response, key string, want ...string) {
	t.Helper()
	for _, it := range r.Response.Items {
		if it.Key == key {
			t.Fatalf("item for %s = error %q value %s; want the key left out (transient), never a verdict", key, it.Error, it.Value)
		}
	}
	se := r.Response.SystemError
	if !strings.HasPrefix(se, "unavailable: ") || !strings.Contains(se, key) {
		t.Fatalf("systemError = %q, want unavailable naming %s", se, key)
	}
	for _, w := range want {
		if !strings.Contains(se, w) {
			t.Errorf("systemError = %q, want it to mention %q", se, w)
		}
	}
}

// wantFaultDefinitive checks a per-key error with code naming key and want.
func wantFaultDefinitive(t *testing.T, r response, key string, code facts.Code, want ...string) {
	t.Helper()
	if r.Response.SystemError != "" || len(r.Response.Items) != 1 {
		t.Fatalf("want one per-key error, got systemError %q items %+v", r.Response.SystemError, r.Response.Items)
	}
	it := r.Response.Items[0]
	if !strings.HasPrefix(it.Error, string(code)+": "+key+": ") {
		t.Fatalf("error = %q, want %q naming %s", it.Error, code, key)
	}
	for _, w := range want {
		if !strings.Contains(it.Error, w) {
			t.Errorf("error = %q, want it to mention %q", it.Error, w)
		}
	}
}

// eventuallyGood polls until key's facts are im's correct facts. Until then
// the only acceptable answer is a transient one: a fetch that outlived a
// fault may still be running in the background (until fetchTimeout, when it
// fails), and a cold lookup may outlast the budget on a loaded machine; a
// per-key error (a cached verdict) fails.
func (e *faultEnv) eventuallyGood(t *testing.T, im faultImage, key string) {
	t.Helper()
	deadline := time.Now().Add(faultFetch + 3*faultBudget)
	for {
		r := e.facts(t, key)
		if r.Response.SystemError == "" || time.Now().After(deadline) {
			wantFaultFacts(t, r, im)
			return
		}
		wantFaultTransient(t, r, key)
		time.Sleep(100 * time.Millisecond)
	}
}

type faultCase struct {
	name string
	// inject sets the fault up for im (on e.px).
	inject func(e *faultEnv, im faultImage)
	tagKey bool // look up im.tagKey instead of im.key
	// code is the definitive per-key error code; "" means transient.
	code facts.Code
	want []string // in the error or systemError
	// asked is the request kind (registrytest.Kind) that must reach the
	// proxy again once a transient fault is cleared ("": not checked).
	asked string
	// streamed: the fault streams faultHugeStream bytes; check that little of
	// it was read or allocated.
	streamed bool
	// forbidden: the fault points at the sink; it must see no connection.
	forbidden bool
	// maxFaulted bounds the requests the fault may see (0: no bound).
	maxFaulted int
}

func TestFaultsFacts(t *testing.T) {
	t.Parallel() // with the other TestFaults*: most of their time is waiting
	e := newFaultEnv(t)
	for i, tc := range faultCases(e) {
		t.Run(tc.name, func(t *testing.T) {
			im := e.push(t, fmt.Sprintf("faults/c%02d", i))
			key := im.key
			if tc.tagKey {
				key = im.tagKey
			}
			accepts := e.sink.Accepts()
			streamed := e.px.StreamedBytes()
			var before runtime.MemStats
			if tc.streamed {
				runtime.GC()
				runtime.ReadMemStats(&before)
			}
			t.Cleanup(func() { e.px.Clear(); e.px.Up(t) }) // even when the case fails
			tc.inject(e, im)
			faulted := e.px.Faulted()
			r := e.facts(t, key)
			if tc.code == "" {
				wantFaultTransient(t, r, key, tc.want...)
			} else {
				wantFaultDefinitive(t, r, key, tc.code, tc.want...)
			}
			if n := e.px.Faulted() - faulted; n == 0 && !strings.HasPrefix(tc.name, "down") {
				t.Errorf("the fault was never applied: the test does not test it")
			} else if tc.maxFaulted > 0 && n > tc.maxFaulted {
				t.Errorf("the faulty registry was asked %d times, want at most %d", n, tc.maxFaulted)
			}
			if tc.forbidden {
				if n := e.sink.Accepts() - accepts; n != 0 {
					t.Errorf("the forbidden address received %d connections, want 0", n)
				}
			}
			if tc.streamed {
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				sent := e.px.StreamedBytes() - streamed
				// The client stops at the limit; socket buffers on loopback
				// hold a few MiB more that the proxy wrote and nobody read.
				if sent > 16<<20 {
					t.Errorf("the proxy streamed %d bytes of a %d-byte body before the client hung up, want < 16 MiB (limit %d)", sent, faultHugeStream, faultManifest)
				}
				// Process-wide: the other TestFaults* run alongside, but
				// reading the body would allocate all of it.
				if alloc := after.TotalAlloc - before.TotalAlloc; alloc > faultHugeStream/4 {
					t.Errorf("the process allocated %d bytes while a %d-byte body was served, want far less", alloc, faultHugeStream)
				}
			}

			// The fault clears: the correct facts, from the registry.
			asked := e.px.Count(tc.asked)
			e.px.Clear()
			e.px.Up(t) // no-op unless the case took the proxy down
			if tc.code != "" {
				// Definitive answers are cached for negativeTTL, no longer.
				time.Sleep(faultNegative + 50*time.Millisecond)
			}
			e.eventuallyGood(t, im, key)
			if tc.asked != "" && e.px.Count(tc.asked) == asked {
				t.Errorf("no %q reached the registry after the fault cleared: a transient failure was cached", tc.asked)
			}
		})
	}
}

// injectRealm makes every request of repo, and the ping that precedes them,
// answer 401 asking for a token from realmURL.
func injectRealm(e *faultEnv, repo, realmURL string) {
	e.px.Inject(func(r *http.Request) bool {
		return r.URL.Path == "/v2/" || strings.Contains(r.URL.Path, "/"+repo+"/")
	}, registrytest.Fault{
		Status: http.StatusUnauthorized,
		Header: http.Header{"Www-Authenticate": {`Bearer realm="` + realmURL + `",service="registry",scope="repository:` + repo + `:pull"`}},
		Body:   `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`,
	})
}

func faultCases(e *faultEnv) []faultCase {
	type F = registrytest.Fault
	manifest := func(im faultImage) func(*http.Request) bool {
		return registrytest.KindPath("GET manifests", "/manifests/"+im.digest.String())
	}
	blob := func(d v1.Hash) func(*http.Request) bool {
		return registrytest.KindPath("GET blobs", "/blobs/"+d.String())
	}
	referrers := registrytest.KindPath("GET referrers", "/referrers/")
	sig := registrytest.KindPath("GET manifests", ".sig")
	hugeManifest := F{
		Stream: faultHugeStream, ContentType: "application/vnd.oci.image.manifest.v1+json",
		StreamPrefix: `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"a":"`,
	}
	declared := hugeManifest
	declared.DeclareLength = true
	hugeBlob := F{Stream: faultHugeStream, StreamPrefix: `{"architecture":"amd64","os":"linux","config":{"Labels":{"a":"`}
	endless := F{
		Stream: faultHugeStream, ContentType: "application/vnd.oci.image.index.v1+json",
		StreamPrefix: `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`,
		StreamUnit:   `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("ab", 32) + `","size":512,"artifactType":"application/spdx+json"},`,
	}
	redirect := func(match func(im faultImage) func(*http.Request) bool, location func(im faultImage) string) func(*faultEnv, faultImage) {
		return func(e *faultEnv, im faultImage) { e.px.Inject(match(im), F{Redirect: location(im)}) }
	}
	configBlob := func(im faultImage) func(*http.Request) bool { return blob(im.config) }
	sinkPort := e.sink.Host[strings.LastIndex(e.sink.Host, ":")+1:]
	realm := func(realmURL string) func(*faultEnv, faultImage) {
		return func(e *faultEnv, im faultImage) { injectRealm(e, im.repo, realmURL) }
	}
	on := func(match func(im faultImage) func(*http.Request) bool, f F) func(*faultEnv, faultImage) {
		return func(e *faultEnv, im faultImage) { e.px.Inject(match(im), f) }
	}
	always := func(m func(*http.Request) bool) func(faultImage) func(*http.Request) bool {
		return func(faultImage) func(*http.Request) bool { return m }
	}
	serveFrom := func(match func(im faultImage) func(*http.Request) bool, from func(im faultImage) string) func(*faultEnv, faultImage) {
		return func(e *faultEnv, im faultImage) { e.px.Inject(match(im), F{ServeFrom: from(im)}) }
	}
	blobPath := func(im faultImage, d v1.Hash) string { return "/v2/" + im.repo + "/blobs/" + d.String() }

	return []faultCase{
		{name: "down (connection refused)", inject: func(e *faultEnv, _ faultImage) { e.px.Down() },
			want: []string{"connection refused"}, asked: "GET manifests"},
		{name: "connection reset on the manifest", inject: on(manifest, F{Reset: true}), asked: "GET manifests", maxFaulted: 10},
		{name: "config blob slower than the budget", inject: on(configBlob, F{Delay: 10 * time.Second}),
			want: []string{"time budget"}},
		{name: "referrers 429 with a long Retry-After", inject: on(always(referrers), F{
			Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"3600"}},
			Body: `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`,
		}), want: []string{"429", "rate limited"}, asked: "GET referrers", maxFaulted: 5},
		{name: "config blob 500", inject: on(configBlob, F{Status: http.StatusInternalServerError, Body: `{"errors":[{"code":"UNKNOWN","message":"boom"}]}`}),
			want: []string{"500"}, asked: "GET blobs"},
		{name: "legacy .sig tag 503", inject: on(always(sig), F{Status: http.StatusServiceUnavailable}),
			want: []string{"503"}, asked: "GET manifests"},

		{name: "truncated manifest", inject: on(manifest, F{Truncate: true}), asked: "GET manifests"},
		{name: "truncated config blob", inject: on(configBlob, F{Truncate: true}), asked: "GET blobs"},
		{name: "truncated referrers listing", inject: on(always(referrers), F{Truncate: true}), asked: "GET referrers"},
		{name: "truncated bundle blob", inject: on(func(im faultImage) func(*http.Request) bool { return blob(im.bundle) }, F{Truncate: true}), asked: "GET blobs"},

		{name: "wrong manifest for the digest", inject: serveFrom(manifest, func(im faultImage) string {
			return "/v2/" + im.repo + "/manifests/" + im.referrer.String()
		}), asked: "GET manifests"},
		{name: "wrong config blob for the digest", inject: serveFrom(configBlob, func(im faultImage) string { return blobPath(im, im.bundle) }),
			asked: "GET blobs"},
		{name: "wrong bundle blob for the digest", inject: serveFrom(func(im faultImage) func(*http.Request) bool { return blob(im.bundle) },
			func(im faultImage) string { return blobPath(im, im.config) }), asked: "GET blobs"},
		{name: "wrong legacy payload blob for the digest", inject: serveFrom(func(im faultImage) func(*http.Request) bool { return blob(im.payload) },
			func(im faultImage) string { return blobPath(im, im.config) }), asked: "GET blobs"},

		{name: "huge manifest, chunked", inject: on(manifest, hugeManifest), code: facts.CodeInvalidContent,
			want: []string{"size limit"}, streamed: true},
		{name: "huge manifest, Content-Length", inject: on(manifest, declared), code: facts.CodeInvalidContent,
			want: []string{"announced"}, streamed: true},
		{name: "huge config blob", inject: on(configBlob, hugeBlob), want: []string{"declares"}, streamed: true, asked: "GET blobs"},
		{name: "huge bundle blob", inject: on(func(im faultImage) func(*http.Request) bool { return blob(im.bundle) }, hugeBlob),
			want: []string{"bundle referrer", "declares"}, streamed: true, asked: "GET blobs"},
		{name: "huge legacy payload blob", inject: on(func(im faultImage) func(*http.Request) bool { return blob(im.payload) }, hugeBlob),
			want: []string{"legacy .sig layer 0", "declares"}, streamed: true, asked: "GET blobs"},
		{name: "endless referrers listing", inject: on(always(referrers), endless), code: facts.CodeInvalidContent,
			want: []string{"referrers", "size limit"}, streamed: true},

		{name: "redirect loop", inject: on(configBlob, F{RedirectLoop: true}), want: []string{"stopped after 10 redirects"},
			asked: "GET blobs", maxFaulted: 11}, // the request and 10 redirects, net/http's default
		{name: "redirect to the metadata address", inject: redirect(configBlob, func(faultImage) string {
			return "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
		}), code: facts.CodeNotAllowed, want: []string{"169.254.169.254", "link-local"}},
		{name: "redirect to a private address", inject: redirect(configBlob, func(im faultImage) string {
			return "http://10.1.2.3/v2/" + im.repo + "/blobs/" + im.config.String()
		}), code: facts.CodeNotAllowed, want: []string{"10.1.2.3", "private"}},
		{name: "redirect to another loopback port", inject: redirect(configBlob, func(im faultImage) string {
			return "http://" + e.sink.Host + "/v2/" + im.repo + "/blobs/" + im.config.String()
		}), code: facts.CodeNotAllowed, want: []string{e.sink.Host, "loopback"}, forbidden: true},
		{name: "redirect to localhost by name", inject: redirect(configBlob, func(im faultImage) string {
			return "http://localhost:" + sinkPort + "/v2/" + im.repo + "/blobs/" + im.config.String()
		}), code: facts.CodeNotAllowed, want: []string{"localhost", "loopback"}, forbidden: true},
		{name: "tag GET redirected to another loopback port", tagKey: true, inject: redirect(func(im faultImage) func(*http.Request) bool {
			// First sight of a tag is a GET of it.
			return registrytest.KindPath("GET manifests", "/"+im.repo+"/manifests/v1")
		}, func(im faultImage) string {
			return "http://" + e.sink.Host + "/v2/" + im.repo + "/manifests/v1"
		}), code: facts.CodeNotAllowed, want: []string{e.sink.Host, "loopback"}, forbidden: true},
		{name: "token realm on a loopback address", inject: realm("http://" + e.sink.Host + "/token"),
			code: facts.CodeNotAllowed, want: []string{"realm", "127.0.0.1"}, forbidden: true},
		{name: "token server redirects to another loopback port", inject: func(e *faultEnv, im faultImage) {
			e.px.Inject(registrytest.Path("/token/"+im.repo), F{Redirect: "http://" + e.sink.Host + "/token"})
			injectRealm(e, im.repo, "http://"+e.px.Host+"/token/"+im.repo)
		}, code: facts.CodeNotAllowed, want: []string{"token-server redirect", e.sink.Host}, forbidden: true},
		{name: "token realm on localhost by name", inject: realm("http://localhost:" + sinkPort + "/token"),
			code: facts.CodeNotAllowed, want: []string{"localhost:" + sinkPort, "loopback"}, forbidden: true},
	}
}

// TestFaultsReferrerFlood: a referrers listing with thousands of entries
// (within the size limit) is cut to limits.maxReferrers, bundles first, so
// the flood neither hides the real signature nor makes thousands of
// requests; the facts say the listing was cut.
func TestFaultsReferrerFlood(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t)
	im := e.push(t, "faults/flood")
	const flood = 3000
	e.px.Inject(registrytest.KindPath("GET referrers", "/"+im.repo+"/"), registrytest.Fault{FloodReferrers: flood})
	gets := e.px.Count("GET manifests")
	// Reading the listing and opening maxReferrers of it may outlast the
	// budget on a loaded machine: then the answer is transient, never facts
	// without the signature.
	e.eventuallyGood(t, im, im.key)
	f := factsOf(t, e.facts(t, im.key), 0)
	want := fmt.Sprintf("%d referrers of %s, only the first %d were checked", flood+1, im.digest, faultReferrers)
	if !strings.Contains(strings.Join(f.VerificationErrors, "\n"), want) {
		t.Errorf("verificationErrors = %q, want %q", f.VerificationErrors, want)
	}
	// The image, maxReferrers referrers, the .sig and .att tags.
	if n := e.px.Count("GET manifests") - gets; n > faultReferrers+3 {
		t.Errorf("%d manifest GETs for a flooded listing, want at most %d", n, faultReferrers+3)
	}
}

// TestFaultsDigest: the digest provider (mutation) answers every failure as
// a per-key error — transient ones as unavailable — within the budget, and
// the tag's digest once the fault clears.
func TestFaultsDigest(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t)
	// The tag's request: a GET on first sight (every case uses a new
	// repository), a HEAD once the tag is known.
	tagReq := func(repo string) func(*http.Request) bool {
		return registrytest.Path("/" + repo + "/manifests/v1")
	}
	sinkPort := e.sink.Host[strings.LastIndex(e.sink.Host, ":")+1:]
	for i, tc := range []struct {
		name      string
		inject    func(repo string)
		code      facts.Code
		want      []string
		forbidden bool
	}{
		{name: "down", inject: func(string) { e.px.Down() }, code: facts.CodeUnavailable, want: []string{"connection refused"}},
		{name: "tag request slower than the budget", inject: func(repo string) {
			e.px.Inject(tagReq(repo), registrytest.Fault{Delay: 10 * time.Second})
		}, code: facts.CodeUnavailable, want: []string{"time budget"}},
		{name: "tag request 429 with a long Retry-After", inject: func(repo string) {
			e.px.Inject(tagReq(repo), registrytest.Fault{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"3600"}}})
		}, code: facts.CodeUnavailable, want: []string{"429"}},
		{name: "tag request 500", inject: func(repo string) {
			e.px.Inject(tagReq(repo), registrytest.Fault{Status: http.StatusInternalServerError})
		}, code: facts.CodeUnavailable, want: []string{"500"}},
		{name: "tag request redirect loop", inject: func(repo string) {
			e.px.Inject(tagReq(repo), registrytest.Fault{RedirectLoop: true})
		}, code: facts.CodeUnavailable, want: []string{"redirects"}},
		{name: "tag request redirected to another loopback port", inject: func(repo string) {
			e.px.Inject(tagReq(repo), registrytest.Fault{Redirect: "http://" + e.sink.Host + "/v2/" + repo + "/manifests/v1"})
		}, code: facts.CodeNotAllowed, want: []string{e.sink.Host}, forbidden: true},
		{name: "token realm on localhost", inject: func(repo string) {
			injectRealm(e, repo, "http://localhost:"+sinkPort+"/token")
		}, code: facts.CodeNotAllowed, want: []string{"localhost:" + sinkPort}, forbidden: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := fmt.Sprintf("digest/c%02d", i)
			d := e.reg.PushImage(t, repo, "v1", registrytest.Image{Created: created})
			key := e.px.Host + "/" + repo + ":v1"
			accepts := e.sink.Accepts()
			t.Cleanup(func() { e.px.Clear(); e.px.Up(t) })
			tc.inject(repo)
			r := e.timed(t, "/v1/externaldata/digest", key)
			if r.Response.SystemError != "" || len(r.Response.Items) != 1 {
				t.Fatalf("systemError %q items %+v, want one per-key error (mutation needs an empty systemError)", r.Response.SystemError, r.Response.Items)
			}
			it := r.Response.Items[0]
			if !strings.HasPrefix(it.Error, string(tc.code)+": "+key+": ") {
				t.Fatalf("error = %q, want %s naming %s", it.Error, tc.code, key)
			}
			for _, w := range tc.want {
				if !strings.Contains(it.Error, w) {
					t.Errorf("error = %q, want it to mention %q", it.Error, w)
				}
			}
			if n := e.sink.Accepts() - accepts; tc.forbidden && n != 0 {
				t.Errorf("the forbidden address received %d connections, want 0", n)
			}

			e.px.Clear()
			e.px.Up(t)
			want := e.px.Host + "/" + repo + "@" + d.String()
			deadline := time.Now().Add(faultFetch + 3*faultBudget)
			for {
				r = e.timed(t, "/v1/externaldata/digest", key)
				var got string
				if len(r.Response.Items) == 1 {
					_ = json.Unmarshal(r.Response.Items[0].Value, &got)
				}
				if got == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after the fault cleared: %+v, want the value %q", r.Response, want)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}
