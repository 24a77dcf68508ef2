package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/server/certs"
	"github.com/imagegate/imagegate/server/config"
)

var created = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func TestFactsSingleAndMultiArch(t *testing.T) {
	reg := registrytest.New(t)
	single := reg.PushImage(t, "team/app", "v1", registrytest.Image{
		Created: created, Labels: map[string]string{"org.opencontainers.image.source": "https://example.test/app"}, User: "65532",
	})
	index, children := reg.PushIndex(t, "team/multi", "v2",
		registrytest.Image{Created: created, OS: "linux", Arch: "amd64"},
		registrytest.Image{Created: created.Add(time.Hour), OS: "linux", Arch: "arm64"},
		registrytest.Image{Created: created, OS: "linux", Arch: "arm", Variant: "v7"},
	)
	h := start(t, reg, nil)

	keySingle := reg.Host + "/team/app:v1"
	keyMulti := reg.Host + "/team/multi:v2"
	keyPinned := reg.Host + "/team/app@" + single.String()
	status, r := h.post(t, "/v1/externaldata/facts", providerRequest(keySingle, keyMulti, keyPinned))
	if status != http.StatusOK {
		t.Fatalf("status = %d, want 200", status)
	}
	if r.Kind != "ProviderResponse" || r.APIVersion != "externaldata.gatekeeper.sh/v1beta1" || !r.Response.Idempotent {
		t.Errorf("envelope = %+v, want ProviderResponse v1beta1 idempotent", r)
	}
	if r.Response.SystemError != "" {
		t.Fatalf("systemError = %q, want none", r.Response.SystemError)
	}

	f := factsOf(t, r, 0)
	if f.Image != keySingle || f.Digest != single.String() {
		t.Errorf("single: image, digest = %q, %q; want %q, %q", f.Image, f.Digest, keySingle, single)
	}
	if f.Reference.Registry != reg.Host || f.Reference.Repository != "team/app" || f.Reference.Tag != "v1" || f.Reference.Digest != "" {
		t.Errorf("single: reference = %+v", f.Reference)
	}
	if f.Config == nil || f.Config.Created != "2025-03-04T05:06:07Z" || f.Config.User != "65532" ||
		f.Config.OS != "linux" || f.Config.Architecture != "amd64" ||
		f.Config.Labels.Get("org.opencontainers.image.source") != "https://example.test/app" {
		t.Errorf("single: config = %+v", f.Config)
	}
	if len(f.Platforms) != 0 || f.Signatures == nil || len(f.Signatures) != 0 || f.Attestations == nil || f.VerificationErrors == nil {
		t.Errorf("single: platforms/signatures/attestations/verificationErrors = %v/%v/%v/%v, want empty lists", f.Platforms, f.Signatures, f.Attestations, f.VerificationErrors)
	}

	m := factsOf(t, r, 1)
	if m.Digest != index.String() || m.MediaType != "application/vnd.oci.image.index.v1+json" || m.Config != nil {
		t.Errorf("multi: digest, mediaType, config = %q, %q, %v", m.Digest, m.MediaType, m.Config)
	}
	want := []struct{ os, arch, variant, created string }{
		{"linux", "amd64", "", "2025-03-04T05:06:07Z"},
		{"linux", "arm64", "", "2025-03-04T06:06:07Z"},
		{"linux", "arm", "v7", "2025-03-04T05:06:07Z"},
	}
	if len(m.Platforms) != len(want) {
		t.Fatalf("multi: %d platforms, want %d: %+v", len(m.Platforms), len(want), m.Platforms)
	}
	for i, w := range want {
		p := m.Platforms[i]
		if p.OS != w.os || p.Architecture != w.arch || p.Variant != w.variant || p.Digest != children[i].String() {
			t.Errorf("multi: platform[%d] = %+v, want %v digest %s", i, p, w, children[i])
		}
		if p.Config == nil || p.Config.Created != w.created || p.Config.Architecture != w.arch {
			t.Errorf("multi: platform[%d].config = %+v, want created %s arch %s", i, p.Config, w.created, w.arch)
		}
	}

	p := factsOf(t, r, 2)
	if p.Digest != single.String() || p.Reference.Digest != single.String() || p.Reference.Tag != "" || p.TagDigest != "" {
		t.Errorf("pinned: %+v", p)
	}
}

func TestFactsErrorsAndDuplicates(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	h := start(t, reg, nil)
	reg.ResetCounts()

	ok := reg.Host + "/team/app:v1"
	keys := []string{
		ok,
		reg.Host + "/team/app:missing",
		"ghcr.io/acme/app:1.0",
		"Not A Reference",
		ok,
		reg.Host + "/nope/nothing:v1",
	}
	status, r := h.post(t, "/v1/externaldata/facts", providerRequest(keys...))
	if status != http.StatusOK {
		t.Fatalf("status = %d", status)
	}
	if r.Response.SystemError != "" {
		t.Errorf("systemError = %q, want none (all outcomes are definitive)", r.Response.SystemError)
	}
	if len(r.Response.Items) != len(keys) {
		t.Fatalf("%d items, want %d (one per key, duplicates repeated)", len(r.Response.Items), len(keys))
	}
	wantErr := []string{"", "not_found: ", "registry_not_allowed: ", "invalid_reference: ", "", "not_found: "}
	for i, it := range r.Response.Items {
		if it.Key != keys[i] {
			t.Errorf("item[%d].key = %q, want %q", i, it.Key, keys[i])
		}
		if wantErr[i] == "" {
			if it.Error != "" || len(it.Value) == 0 {
				t.Errorf("item[%d] (%s) = error %q, want a value", i, it.Key, it.Error)
			}
			continue
		}
		if !strings.HasPrefix(it.Error, wantErr[i]) || !strings.Contains(it.Error, keys[i]) {
			t.Errorf("item[%d].error = %q, want prefix %q naming the image", i, it.Error, wantErr[i])
		}
	}
	// The duplicate key was fetched once: first sight of a tag is one GET
	// of it (v1, missing, nope), whose body v1's facts are made from.
	if got := reg.Count("HEAD manifests"); got != 0 {
		t.Errorf("registry saw %d manifest HEADs, want 0 (first sight of the tags)", got)
	}
	if got := reg.Count("GET manifests"); got != 3 {
		t.Errorf("registry saw %d manifest GETs, want 3 (one per tag, duplicates fetched once, no GET by digest)", got)
	}
	if got := reg.CountPath("GET manifests", "/team/app/manifests/v1"); got != 1 {
		t.Errorf("registry saw %d GETs of team/app:v1, want 1", got)
	}
}

func TestTagMovesFreshness(t *testing.T) {
	reg := registrytest.New(t)
	first := reg.PushImage(t, "team/app", "stable", registrytest.Image{Created: created})
	h := start(t, reg, func(c *config.Config) { c.Cache.TagTTL = config.Duration(time.Millisecond) })
	key := reg.Host + "/team/app:stable@" + first.String()

	_, r := h.post(t, "/v1/externaldata/facts", providerRequest(key))
	f := factsOf(t, r, 0)
	if f.Digest != first.String() || f.TagDigest != first.String() || f.Reference.Tag != "stable" || f.Reference.Digest != first.String() {
		t.Fatalf("before move: digest %q tagDigest %q reference %+v, want both %s", f.Digest, f.TagDigest, f.Reference, first)
	}

	second := reg.PushImage(t, "team/app", "stable", registrytest.Image{Created: created.Add(24 * time.Hour)})
	time.Sleep(5 * time.Millisecond) // past the 1ms tag TTL
	_, r = h.post(t, "/v1/externaldata/facts", providerRequest(key, reg.Host+"/team/app:stable"))
	f = factsOf(t, r, 0)
	if f.Digest != first.String() || f.TagDigest != second.String() {
		t.Errorf("after move: digest %q tagDigest %q, want pinned %s and tag now %s", f.Digest, f.TagDigest, first, second)
	}
	if g := factsOf(t, r, 1); g.Digest != second.String() {
		t.Errorf("tag key after move: digest %q, want %s", g.Digest, second)
	}
}

func TestPrivateRegistryAuth(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithBasicAuth("robot", "s3cret"))
	reg.PushImage(t, "private/app", "v1", registrytest.Image{Created: created})
	dir := t.TempDir()
	dockerConfig := filepath.Join(dir, ".dockerconfigjson")
	writeFile(t, dockerConfig, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte("robot:s3cret"))))
	otherHost := filepath.Join(dir, "other.json")
	writeFile(t, otherHost, fmt.Sprintf(`{"auths":{"ghcr.io":{"auth":%q}}}`, base64.StdEncoding.EncodeToString([]byte("robot:s3cret"))))

	for _, tc := range []struct {
		desc, dockerConfig, wantPrefix string
	}{
		{desc: "credentials for the registry", dockerConfig: dockerConfig},
		{desc: "no credentials", wantPrefix: "unauthorized: "},
		{desc: "credentials for another host are not sent", dockerConfig: otherHost, wantPrefix: "unauthorized: "},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h := start(t, reg, func(c *config.Config) { c.Registries.DockerConfig = tc.dockerConfig })
			_, r := h.post(t, "/v1/externaldata/facts", providerRequest(reg.Host+"/private/app:v1"))
			it := r.Response.Items[0]
			if tc.wantPrefix == "" {
				if it.Error != "" {
					t.Fatalf("error = %q, want facts", it.Error)
				}
				return
			}
			if !strings.HasPrefix(it.Error, tc.wantPrefix) {
				t.Errorf("error = %q, want prefix %q", it.Error, tc.wantPrefix)
			}
		})
	}
}

func TestTransientFailuresAreSystemErrorsAndNotCached(t *testing.T) {
	reg := registrytest.New(t)
	h := start(t, reg, nil)
	missing := reg.Host + "/team/app:missing"

	for _, code := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			tag := fmt.Sprint("v", code)
			reg.PushImage(t, "team/app", tag, registrytest.Image{Created: created})
			ok := reg.Host + "/team/app:" + tag
			reg.Fail(func(r *http.Request) int {
				if strings.Contains(r.URL.Path, "/manifests/"+tag) {
					return code
				}
				return 0
			})
			_, r := h.post(t, "/v1/externaldata/facts", providerRequest(ok, missing))
			if len(r.Response.Items) != 1 || r.Response.Items[0].Key != missing || !strings.HasPrefix(r.Response.Items[0].Error, "not_found: ") {
				t.Errorf("items = %+v, want only the definitive not_found item (transient key omitted)", r.Response.Items)
			}
			se := r.Response.SystemError
			if !strings.HasPrefix(se, "unavailable: 1 of 2 keys") || !strings.Contains(se, ok) || !strings.Contains(se, fmt.Sprint(code)) {
				t.Errorf("systemError = %q, want it to count the key, name %s and the status %d", se, ok, code)
			}
			reg.Fail(nil)
			_, r = h.post(t, "/v1/externaldata/facts", providerRequest(ok))
			if r.Response.SystemError != "" || len(r.Response.Items) != 1 || r.Response.Items[0].Error != "" {
				t.Errorf("after the fault cleared: %+v, want facts (transient failure must not be cached)", r.Response)
			}
		})
	}
}

func TestBudgetAnswersInTimeAndFetchCompletes(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/slow", "v1", registrytest.Image{Created: created})
	h := start(t, reg, func(c *config.Config) { c.Budget = config.Duration(200 * time.Millisecond) })
	reg.ResetCounts()
	reg.Delay(600*time.Millisecond, func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/manifests/v1") })
	key := reg.Host + "/team/slow:v1"

	status, r := h.post(t, "/v1/externaldata/facts", providerRequest(key))
	if status != http.StatusOK || len(r.Response.Items) != 0 || !strings.Contains(r.Response.SystemError, "time budget") {
		t.Fatalf("slow registry: status %d, response %+v; want 200, no items and a systemError about the budget", status, r.Response)
	}
	// The fetch went on in the background; the next request is answered from cache.
	reg.Delay(0, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, r = h.post(t, "/v1/externaldata/facts", providerRequest(key))
		if len(r.Response.Items) == 1 && r.Response.Items[0].Error == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("facts never arrived: %+v", r.Response)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := reg.CountPath("GET manifests", "/manifests/v1") + reg.CountPath("HEAD manifests", "/manifests/v1"); got != 1 {
		t.Errorf("registry saw %d requests for the tag, want 1 (the background fetch, reused)", got)
	}
}

func TestSingleflightConcurrentRequests(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/app", "cold", registrytest.Image{Created: created})
	h := start(t, reg, nil)
	reg.ResetCounts()
	// Hold the tag's GET so every request arrives while it is in flight.
	reg.Delay(300*time.Millisecond, func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/manifests/cold") })
	key := reg.Host + "/team/app:cold"

	const n = 40
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, r := h.post(t, "/v1/externaldata/facts", providerRequest(key))
			if len(r.Response.Items) != 1 || r.Response.Items[0].Error != "" {
				errs <- fmt.Sprintf("%+v", r.Response)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("a concurrent request failed: %s", e)
	}
	for kind, want := range map[string]int{"HEAD manifests": 0, "GET manifests": 1, "GET blobs": 1} {
		if got := reg.Count(kind); got != want {
			t.Errorf("registry saw %d %q, want %d for %d concurrent requests", got, kind, want, n)
		}
	}
}

func TestDigestProvider(t *testing.T) {
	reg := registrytest.New(t)
	d := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	pinned := "ghcr.io/acme/app@sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		desc    string
		keepTag bool
		want    []string
	}{
		{desc: "default drops the tag", want: []string{reg.Host + "/team/app@" + d.String(), "", pinned}},
		{desc: "keepTag", keepTag: true, want: []string{reg.Host + "/team/app:v1@" + d.String(), "", pinned}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h := start(t, reg, func(c *config.Config) {
				c.Digest.KeepTag = tc.keepTag
				c.Registries.Allow = append(c.Registries.Allow, "ghcr.io")
			})
			reg.ResetCounts()
			keys := []string{reg.Host + "/team/app:v1", reg.Host + "/team/app:missing", pinned}
			_, r := h.post(t, "/v1/externaldata/digest", providerRequest(keys...))
			if r.Response.SystemError != "" || !r.Response.Idempotent {
				t.Errorf("systemError %q idempotent %v, want none and true (mutation requires both)", r.Response.SystemError, r.Response.Idempotent)
			}
			for i, it := range r.Response.Items {
				if tc.want[i] == "" {
					if !strings.HasPrefix(it.Error, "not_found: ") {
						t.Errorf("item[%d].error = %q, want not_found", i, it.Error)
					}
					continue
				}
				var got string
				if err := json.Unmarshal(it.Value, &got); err != nil || got != tc.want[i] {
					t.Errorf("item[%d].value = %s (%v), want string %q", i, it.Value, err, tc.want[i])
				}
			}
			// The digest provider needs only the digest: one HEAD per tag,
			// even on first sight (Docker Hub does not count HEADs as
			// pulls); nothing else.
			if got := reg.CountPath("HEAD manifests", "/manifests/v1") + reg.CountPath("HEAD manifests", "/manifests/missing"); got != 2 {
				t.Errorf("digest provider made %d HEADs of the tags, want 2 (one per tag)", got)
			}
			if got := reg.Total(); got != 2 {
				t.Errorf("digest provider made %d registry requests, want 2 (no GET, no blob)", got)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	reg := registrytest.New(t)
	h := start(t, reg, func(c *config.Config) {
		c.Limits.MaxKeys = 3
		c.Limits.MaxBodyBytes = 4096
	})
	reg.ResetCounts()
	long := reg.Host + "/" + strings.Repeat("a", 1100)
	for _, tc := range []struct {
		desc, body, want string
	}{
		{desc: "not JSON", body: "hello", want: "body is not a ProviderRequest"},
		{desc: "wrong kind", body: `{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderResponse","request":{"keys":["a"]}}`, want: `kind "ProviderResponse"`},
		{desc: "wrong apiVersion", body: `{"apiVersion":"v1","kind":"ProviderRequest","request":{"keys":["a"]}}`, want: `apiVersion "v1"`},
		{desc: "no keys", body: `{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{"keys":[]}}`, want: "request.keys is empty"},
		{desc: "too many keys", body: string(providerRequest("a", "b", "c", "d")), want: "4 keys, more than the limit of 3"},
		{desc: "over-long key", body: string(providerRequest(long)), want: fmt.Sprintf("request.keys[0] is %d bytes", len(long))},
		{desc: "oversized body", body: string(providerRequest(strings.Repeat("x", 5000))), want: "larger than 4096 bytes"},
		{desc: "trailing data", body: string(providerRequest("a")) + "{}", want: "trailing data"},
	} {
		for _, path := range []string{"/v1/externaldata/facts", "/v1/externaldata/digest"} {
			t.Run(tc.desc+" "+path, func(t *testing.T) {
				status, r := h.post(t, path, []byte(tc.body))
				if status != http.StatusBadRequest {
					t.Errorf("status = %d, want 400", status)
				}
				if !strings.HasPrefix(r.Response.SystemError, "bad_request: ") || !strings.Contains(r.Response.SystemError, tc.want) {
					t.Errorf("systemError = %q, want bad_request mentioning %q", r.Response.SystemError, tc.want)
				}
			})
		}
	}
	if got := reg.Total(); got != 0 {
		t.Errorf("registry saw %d requests for bad input, want 0", got)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	h := start(t, reg, nil)
	h.post(t, "/v1/externaldata/facts", providerRequest(reg.Host+"/team/app:v1", reg.Host+"/team/app:v1"))
	h.post(t, "/v1/externaldata/facts", providerRequest(reg.Host+"/team/app:v1"))

	for _, path := range []string{"/healthz", "/readyz"} {
		if status, body := h.get(t, path); status != http.StatusOK || !strings.Contains(body, `"ok"`) {
			t.Errorf("GET %s = %d %s, want 200 ok", path, status, body)
		}
	}
	status, body := h.get(t, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics = %d", status)
	}
	for _, want := range []string{
		`imagegate_http_requests_total{code="200",handler="facts"} 2`,
		`imagegate_http_request_duration_seconds_count{handler="facts"} 2`,
		`imagegate_registry_requests_total{operation="manifest_get",result="200"} 1`, // first sight of the tag: one GET, body reused
		`imagegate_registry_requests_total{operation="blob_get",result="200"} 1`,
		`imagegate_cache_lookups_total{cache="tag",result="hit"} 1`,
		`imagegate_cache_lookups_total{cache="facts",result="hit"} 1`,
		`imagegate_externaldata_items_total{provider="facts",result="ok"} 3`,
		`imagegate_lookup_in_flight 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "team/app") {
		t.Error("/metrics mentions an image: labels must not carry references")
	}
	if logs := h.logs.String(); !strings.Contains(logs, `"path":"/v1/externaldata/facts"`) || strings.Contains(logs, "team/app") {
		t.Errorf("logs should record requests without bodies or images; got:\n%s", logs)
	}
}

// TestMutualTLS: with tls.clientCAFile, /v1/* and /metrics need a client
// certificate from that CA (Gatekeeper's); /healthz and /readyz stay open for
// kubelet probes; a certificate from another CA fails the handshake.
func TestMutualTLS(t *testing.T) {
	h := start(t, nil, func(c *config.Config) { c.Registries.Allow = []string{"ghcr.io"} })
	// Restart with the bundle's CA as client CA: the harness generated it.
	h2 := start(t, nil, func(c *config.Config) {
		c.Registries.Allow = []string{"ghcr.io"}
		c.TLS.CertFile, c.TLS.KeyFile, c.TLS.ClientCAFile = h.bundle.CertFile, h.bundle.KeyFile, h.bundle.CAFile
	})
	h2.bundle = h.bundle
	anonymous, gatekeeper := h2.newClient(t, ""), h2.newClient(t, "client")
	body := providerRequest("Not A Reference")
	for _, tc := range []struct {
		desc   string
		client *http.Client
		method string
		path   string
		want   int
	}{
		{desc: "probe without a certificate", client: anonymous, method: http.MethodGet, path: "/healthz", want: http.StatusOK},
		{desc: "readiness without a certificate", client: anonymous, method: http.MethodGet, path: "/readyz", want: http.StatusOK},
		{desc: "facts without a certificate", client: anonymous, method: http.MethodPost, path: "/v1/externaldata/facts", want: http.StatusForbidden},
		{desc: "digest without a certificate", client: anonymous, method: http.MethodPost, path: "/v1/externaldata/digest", want: http.StatusForbidden},
		{desc: "imagereview without a certificate", client: anonymous, method: http.MethodPost, path: "/v1/imagereview", want: http.StatusForbidden},
		{desc: "metrics without a certificate", client: anonymous, method: http.MethodGet, path: "/metrics", want: http.StatusForbidden},
		{desc: "facts with the client certificate", client: gatekeeper, method: http.MethodPost, path: "/v1/externaldata/facts", want: http.StatusOK},
		{desc: "metrics with the client certificate", client: gatekeeper, method: http.MethodGet, path: "/metrics", want: http.StatusOK},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, h2.base+tc.path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
			}
		})
	}

	other, err := certs.Generate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	stranger := &harness{base: h2.base, bundle: &certs.Bundle{CAPEM: h.bundle.CAPEM, ClientCertFile: other.ClientCertFile, ClientKeyFile: other.ClientKeyFile}}
	if _, err := stranger.newClient(t, "client").Get(h2.base + "/healthz"); err == nil {
		t.Error("a client certificate from another CA was accepted, want a TLS failure")
	}
}
