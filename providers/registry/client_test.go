package registry_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

var created = time.Date(2024, 5, 6, 9, 8, 7, 0, time.FixedZone("CEST", 2*60*60))

func TestDescribeImage(t *testing.T) {
	reg := registrytest.New(t)
	c := newClient(t, reg.Host, registry.Options{})
	for _, tc := range []struct {
		desc        string
		spec        registrytest.Image
		wantCreated string
		wantLabels  map[string]string
	}{
		{
			desc: "labels, user and a created time outside UTC",
			spec: registrytest.Image{
				Created: created,
				Labels:  map[string]string{"org.opencontainers.image.source": "https://github.com/acme/app", "team": "platform"},
				User:    "1000:1000",
				OS:      "linux", Arch: "arm64", Variant: "v8",
			},
			wantCreated: "2024-05-06T07:08:07Z",
			wantLabels:  map[string]string{"org.opencontainers.image.source": "https://github.com/acme/app", "team": "platform"},
		},
		{
			desc:       "no created time and no labels",
			spec:       registrytest.Image{},
			wantLabels: map[string]string{},
		},
		{
			desc:        "root user, windows",
			spec:        registrytest.Image{Created: created.UTC(), User: "root", OS: "windows", Arch: "amd64"},
			wantCreated: "2024-05-06T07:08:07Z",
			wantLabels:  map[string]string{},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			img := registrytest.Build(t, tc.spec)
			repo := "team/" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
			repo = strings.NewReplacer(",", "", " ", "-", "_", "-").Replace(repo)
			dig := reg.Push(t, repo, "v1", img)
			cfgName, err := img.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			raw, err := img.RawManifest()
			if err != nil {
				t.Fatal(err)
			}
			mt, err := img.MediaType()
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}

			key := reg.Host + "/" + repo + ":v1"
			ref := mustParse(t, key, func(string) bool { return true })
			reg.ResetCounts()
			desc, err := c.Resolve(t.Context(), key, *ref.Tag, false)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", key, err)
			}
			if desc.Digest != dig || desc.MediaType != mt || desc.Size != int64(len(raw)) {
				t.Errorf("Resolve(%q) = %s %s %d, want %s %s %d", key, desc.Digest, desc.MediaType, desc.Size, dig, mt, len(raw))
			}
			f, err := c.Describe(t.Context(), key, ref.Repository().Digest(desc.Digest.String()))
			if err != nil {
				t.Fatalf("Describe(%q): %v", key, err)
			}
			want := &facts.Facts{
				Digest:    dig.String(),
				MediaType: string(mt),
				Size:      int64(len(raw)),
				Config: &facts.Config{
					Created:      tc.wantCreated,
					Labels:       facts.LabelsOf(tc.wantLabels),
					User:         tc.spec.User,
					OS:           cf.OS,
					Architecture: cf.Architecture,
					Variant:      tc.spec.Variant,
					Digest:       cfgName.String(),
				},
			}
			if !reflect.DeepEqual(f, want) {
				t.Errorf("Describe(%q) = %s\nwant %s", key, js(f), js(want))
			}
			// First sight: one GET of the tag gives the digest and the
			// body Describe uses; no HEAD, no second GET by digest.
			for kind, n := range map[string]int{"HEAD manifests": 0, "GET manifests": 1, "GET blobs": 1} {
				if got := reg.Count(kind); got != n {
					t.Errorf("registry saw %d %q, want %d", got, kind, n)
				}
			}
			if got := reg.CountPath("GET manifests", "/manifests/v1"); got != 1 {
				t.Errorf("registry saw %d GETs of the tag, want 1", got)
			}
			if got := reg.Total(); got != 2 {
				t.Errorf("registry saw %d requests, want 2", got)
			}
		})
	}
}

func TestDescribeIndex(t *testing.T) {
	reg := registrytest.New(t)
	c := newClient(t, reg.Host, registry.Options{})
	specs := []registrytest.Image{
		{Created: created, OS: "linux", Arch: "amd64", Labels: map[string]string{"arch": "amd64"}},
		{Created: created.Add(time.Minute), OS: "linux", Arch: "arm64", User: "nobody"},
		{Created: created.Add(2 * time.Minute), OS: "linux", Arch: "arm", Variant: "v7"},
	}
	idxDigest, children := reg.PushIndex(t, "team/multi", "v1", specs...)

	for _, tc := range []struct {
		desc string
		key  string
	}{
		{desc: "by tag", key: reg.Host + "/team/multi:v1"},
		{desc: "by digest", key: reg.Host + "/team/multi@" + idxDigest.String()},
		{desc: "by tag and digest", key: reg.Host + "/team/multi:v1@" + idxDigest.String()},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg.ResetCounts()
			f, err := describeKey(t.Context(), c, func(string) bool { return true }, tc.key)
			if err != nil {
				t.Fatalf("describe %q: %v", tc.key, err)
			}
			if f.Digest != idxDigest.String() || f.MediaType != string(types.OCIImageIndex) || f.Size <= 0 {
				t.Errorf("describe %q = digest %s mediaType %s size %d, want %s %s >0", tc.key, f.Digest, f.MediaType, f.Size, idxDigest, types.OCIImageIndex)
			}
			if f.Config != nil {
				t.Errorf("describe %q: Config = %s, want nil for an index", tc.key, js(f.Config))
			}
			if len(f.Platforms) != len(specs) {
				t.Fatalf("describe %q: %d platforms, want %d: %s", tc.key, len(f.Platforms), len(specs), js(f.Platforms))
			}
			for i, s := range specs {
				p := f.Platforms[i]
				labels := s.Labels
				if labels == nil {
					labels = map[string]string{}
				}
				wantP := facts.Platform{
					OS: s.OS, Architecture: s.Arch, Variant: s.Variant,
					Digest:    children[i].String(),
					MediaType: string(types.DockerManifestSchema2),
					Size:      p.Size,
					Config: &facts.Config{
						Created: s.Created.UTC().Format(time.RFC3339),
						Labels:  facts.LabelsOf(labels), User: s.User,
						OS: s.OS, Architecture: s.Arch, Variant: s.Variant,
					},
				}
				if p.Config != nil {
					if !strings.HasPrefix(p.Config.Digest, "sha256:") || len(p.Config.Digest) != 71 {
						t.Errorf("platform %d config digest = %q, want a sha256 digest", i, p.Config.Digest)
					}
					wantP.Config.Digest = p.Config.Digest
				}
				if p.Size <= 0 {
					t.Errorf("platform %d size = %d, want > 0", i, p.Size)
				}
				if !reflect.DeepEqual(p, wantP) {
					t.Errorf("platform %d = %s\nwant %s", i, js(p), js(wantP))
				}
			}
			// A tag key: the index is read by its tag (first sight), not by
			// digest as well; a digest key is described without its tag.
			wantTagGets, wantIndexGets := 0, 1
			if strings.HasSuffix(tc.key, ":v1") {
				wantTagGets, wantIndexGets = 1, 0
			}
			for kind, n := range map[string]int{"HEAD manifests": 0, "GET manifests": 1 + len(specs), "GET blobs": len(specs)} {
				if got := reg.Count(kind); got != n {
					t.Errorf("registry saw %d %q, want %d", got, kind, n)
				}
			}
			if got := reg.CountPath("GET manifests", "/manifests/v1"); got != wantTagGets {
				t.Errorf("registry saw %d GETs of the tag, want %d", got, wantTagGets)
			}
			if got := reg.CountPath("GET manifests", "/manifests/"+idxDigest.String()); got != wantIndexGets {
				t.Errorf("registry saw %d GETs of the index by digest, want %d", got, wantIndexGets)
			}
		})
	}
}

// TestDescribeIndexSkipsAttestations checks BuildKit's attestation manifests
// (platform unknown/unknown) are neither listed nor counted against Children.
func TestDescribeIndexSkipsAttestations(t *testing.T) {
	reg := registrytest.New(t)
	amd := registrytest.Build(t, registrytest.Image{Created: created, Arch: "amd64"})
	arm := registrytest.Build(t, registrytest.Image{Created: created, Arch: "arm64"})
	att := registrytest.Build(t, registrytest.Image{OS: "unknown", Arch: "unknown"})
	amdDigest, _ := amd.Digest()
	armDigest, _ := arm.Digest()
	attDigest, _ := att.Digest()
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": amdDigest.String()},
		}},
	)
	tag, err := name.NewTag(reg.Host+"/team/buildkit:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatalf("push index: %v", err)
	}

	for _, tc := range []struct {
		desc     string
		children int
	}{
		{desc: "default limits", children: 0},
		{desc: "children limit equal to the image count", children: 2},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := newClient(t, reg.Host, registry.Options{Limits: registry.Limits{Children: tc.children}})
			reg.ResetCounts()
			f, err := describeKey(t.Context(), c, func(string) bool { return true }, tag.String())
			if err != nil {
				t.Fatalf("describe %s: %v", tag, err)
			}
			var got []string
			for _, p := range f.Platforms {
				got = append(got, p.OS+"/"+p.Architecture+"@"+p.Digest)
			}
			want := []string{"linux/amd64@" + amdDigest.String(), "linux/arm64@" + armDigest.String()}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("describe %s platforms = %v, want %v (attestation %s skipped)", tag, got, want, attDigest)
			}
			if n := reg.Count("GET manifests"); n != 3 {
				t.Errorf("registry saw %d GET manifests, want 3 (index + 2 images, not the attestation)", n)
			}
		})
	}
}

// TestResolveKnownUsesOneHead: a re-check of a tag the caller knows is one
// HEAD and nothing else (Docker Hub counts GETs of manifests as pulls).
func TestResolveKnownUsesOneHead(t *testing.T) {
	reg := registrytest.New(t)
	dig := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	idx, _ := reg.PushIndex(t, "team/multi", "v1", registrytest.Image{Arch: "amd64"}, registrytest.Image{Arch: "arm64"})
	c := newClient(t, reg.Host, registry.Options{})
	for _, tc := range []struct {
		desc string
		key  string
		want v1.Hash
	}{
		{desc: "image", key: reg.Host + "/team/app:v1", want: dig},
		{desc: "index", key: reg.Host + "/team/multi:v1", want: idx},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ref := mustParse(t, tc.key, func(string) bool { return true })
			reg.ResetCounts()
			desc, err := c.Resolve(t.Context(), tc.key, *ref.Tag, true)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tc.key, err)
			}
			if desc.Digest != tc.want {
				t.Errorf("Resolve(%q) = %s, want %s", tc.key, desc.Digest, tc.want)
			}
			if got := reg.Count("HEAD manifests"); got != 1 {
				t.Errorf("Resolve(%q): registry saw %d HEAD manifests, want 1", tc.key, got)
			}
			if got := reg.Count("GET manifests"); got != 0 {
				t.Errorf("Resolve(%q): registry saw %d GET manifests, want 0 (Docker Hub counts GETs as pulls)", tc.key, got)
			}
			if got := reg.Total(); got != 1 {
				t.Errorf("Resolve(%q): registry saw %d requests, want 1", tc.key, got)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	missing := "sha256:" + strings.Repeat("0", 64)
	only := func(kind string, code int) func(*http.Request) int {
		return func(r *http.Request) int {
			if registrytest.Kind(r) == kind {
				return code
			}
			return 0
		}
	}
	for _, tc := range []struct {
		desc  string
		repo  string // appended to the registry host
		allow []string
		fail  func(*http.Request) int
		want  facts.Code
		// wantCounts are exact request counts by kind after the call.
		wantCounts map[string]int
		wantTotal  int // -1: don't check
	}{
		{desc: "found", repo: "/team/app:v1", wantTotal: 2},
		{desc: "missing tag", repo: "/team/app:nope", want: facts.CodeNotFound, wantCounts: map[string]int{"GET manifests": 1, "HEAD manifests": 0}, wantTotal: 1},
		{desc: "missing repository", repo: "/team/nothing:v1", want: facts.CodeNotFound, wantTotal: 1},
		{desc: "missing digest", repo: "/team/app@" + missing, want: facts.CodeNotFound, wantCounts: map[string]int{"GET manifests": 1}, wantTotal: 1},
		{desc: "missing config blob", repo: "/team/app:v1", fail: only("GET blobs", http.StatusNotFound), want: facts.CodeNotFound, wantTotal: 2},
		{
			desc: "registry not allowed", repo: "/team/app:v1", allow: []string{"ghcr.io"},
			want: facts.CodeNotAllowed, wantCounts: map[string]int{"GET ping": 0}, wantTotal: 0,
		},
		{
			desc: "registry not allowed, digest key", repo: "/team/app@" + missing, allow: []string{"ghcr.io"},
			want: facts.CodeNotAllowed, wantCounts: map[string]int{"GET ping": 0}, wantTotal: 0,
		},
		{
			desc: "server unavailable is retried then transient", repo: "/team/app:v1",
			// The first contact's early anonymous GET, then the usual
			// GET and its retries.
			fail: only("GET manifests", http.StatusServiceUnavailable),
			want: facts.CodeUnavailable, wantCounts: map[string]int{"GET manifests": 1 + fastRetry.Steps}, wantTotal: 1 + fastRetry.Steps,
		},
		{
			desc: "throttled is retried then transient", repo: "/team/app:v1",
			fail: only("GET manifests", http.StatusTooManyRequests),
			want: facts.CodeUnavailable, wantCounts: map[string]int{"GET manifests": 1 + fastRetry.Steps}, wantTotal: 1 + fastRetry.Steps,
		},
		{
			desc: "server error on the config is transient", repo: "/team/app:v1",
			fail: only("GET blobs", http.StatusInternalServerError),
			want: facts.CodeUnavailable, wantCounts: map[string]int{"GET blobs": fastRetry.Steps}, wantTotal: 1 + fastRetry.Steps,
		},
		{
			desc: "server error on the ping is transient", repo: "/team/app:v1",
			// The early GET of the first contact goes alongside the ping
			// (and is answered); the config's GET needs the ping.
			fail: only("GET ping", http.StatusBadGateway), want: facts.CodeUnavailable, wantCounts: map[string]int{"GET manifests": 1, "GET blobs": 0}, wantTotal: 1,
		},
		// A 401: the early anonymous GET, the usual GET, and once more
		// with a fresh handshake (a changed auth challenge would explain
		// it; TestChallengeChange).
		{desc: "unauthorized", repo: "/team/app:v1", fail: only("GET manifests", http.StatusUnauthorized), want: facts.CodeUnauthorized,
			wantCounts: map[string]int{"GET manifests": 3}, wantTotal: 3},
		// A 403: the early anonymous GET, then the usual GET.
		{desc: "forbidden", repo: "/team/app:v1", fail: only("GET manifests", http.StatusForbidden), want: facts.CodeUnauthorized, wantTotal: 2},
		{desc: "forbidden manifest get by digest", repo: "/team/app@" + missing, fail: only("GET manifests", http.StatusForbidden), want: facts.CodeUnauthorized, wantTotal: 2},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg := registrytest.New(t)
			reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
			g := newGuard(t, reg.Host)
			if tc.allow != nil {
				g = newGuard(t, tc.allow...)
			}
			c := newClient(t, reg.Host, registry.Options{Guard: g})
			reg.ResetCounts()
			reg.Fail(tc.fail)
			key := reg.Host + tc.repo
			start := time.Now()
			_, err := describeKey(t.Context(), c, func(string) bool { return true }, key)
			checkCode(t, fmt.Sprintf("describe %q", key), err, tc.want)
			if err != nil && !strings.Contains(err.Error(), key) {
				t.Errorf("describe %q error = %q, want it to name the key", key, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("describe %q took %v, want it quick", key, d)
			}
			for kind, n := range tc.wantCounts {
				if got := reg.Count(kind); got != n {
					t.Errorf("describe %q: registry saw %d %q, want %d", key, got, kind, n)
				}
			}
			if tc.wantTotal >= 0 {
				if got := reg.Total(); got != tc.wantTotal {
					t.Errorf("describe %q: registry saw %d requests, want %d", key, got, tc.wantTotal)
				}
			}
		})
	}
}

// TestNotAllowedDirectCalls checks Resolve and Describe refuse a registry
// outside the allowlist themselves, not only through Check.
func TestNotAllowedDirectCalls(t *testing.T) {
	reg := registrytest.New(t)
	dig := reg.PushImage(t, "team/app", "v1", registrytest.Image{})
	c := newClient(t, reg.Host, registry.Options{Guard: newGuard(t, "ghcr.io")})
	ref := mustParse(t, reg.Host+"/team/app:v1", nil)
	reg.ResetCounts()
	for _, tc := range []struct {
		desc string
		call func() error
	}{
		{desc: "check", call: func() error { return c.Check(ref) }},
		{desc: "resolve", call: func() error { _, err := c.Resolve(t.Context(), ref.Key, *ref.Tag, false); return err }},
		{desc: "resolve known", call: func() error { _, err := c.Resolve(t.Context(), ref.Key, *ref.Tag, true); return err }},
		{desc: "describe", call: func() error {
			_, err := c.Describe(t.Context(), ref.Key, ref.Repository().Digest(dig.String()))
			return err
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			checkCode(t, tc.desc, tc.call(), facts.CodeNotAllowed)
		})
	}
	if n := reg.Count("GET ping") + reg.Total(); n != 0 {
		t.Errorf("registry saw %d requests, want 0", n)
	}
}

func TestNewRequiresGuard(t *testing.T) {
	if _, err := registry.New(registry.Options{}); err == nil {
		t.Fatal("registry.New without a guard succeeded, want an error")
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func dockerConfig(t testing.TB, dir string, auths map[string]string) string {
	t.Helper()
	m := map[string]map[string]string{}
	for host, userPass := range auths {
		m[host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(userPass))}
	}
	path := filepath.Join(dir, "config.json")
	writeFile(t, path, js(map[string]any{"auths": m}))
	return path
}

func credFiles(t testing.TB, dir, host, user, pass string) registry.Credential {
	t.Helper()
	u, p := filepath.Join(dir, "username"), filepath.Join(dir, "password")
	writeFile(t, u, user+"\n")
	writeFile(t, p, pass+"\n")
	return registry.Credential{Registry: host, UsernameFile: u, PasswordFile: p}
}

func TestKeychain(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithBasicAuth("alice", "s3cret"))
	reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	other := registrytest.New(t) // a second host:port on 127.0.0.1
	for _, tc := range []struct {
		desc     string
		keychain func(t *testing.T, dir string) *registry.Keychain
		want     facts.Code
	}{
		{desc: "no keychain", want: facts.CodeUnauthorized},
		{
			desc: "docker config for the registry",
			keychain: func(t *testing.T, dir string) *registry.Keychain {
				return mustKeychain(t, dockerConfig(t, dir, map[string]string{reg.Host: "alice:s3cret"}), nil)
			},
		},
		{
			desc: "docker config keyed by URL",
			keychain: func(t *testing.T, dir string) *registry.Keychain {
				return mustKeychain(t, dockerConfig(t, dir, map[string]string{"http://" + reg.Host + "/v2/": "alice:s3cret"}), nil)
			},
		},
		{
			desc: "docker config with username and password fields",
			keychain: func(t *testing.T, dir string) *registry.Keychain {
				path := filepath.Join(dir, "config.json")
				writeFile(t, path, fmt.Sprintf(`{"auths":{%q:{"username":"alice","password":"s3cret"}}}`, reg.Host))
				return mustKeychain(t, path, nil)
			},
		},
		{
			desc: "docker config with a wrong password",
			keychain: func(t *testing.T, dir string) *registry.Keychain {
				return mustKeychain(t, dockerConfig(t, dir, map[string]string{reg.Host: "alice:wrong"}), nil)
			},
			want: facts.CodeUnauthorized,
		},
		{
			desc: "docker config for another port only",
			keychain: func(t *testing.T, dir string) *registry.Keychain {
				return mustKeychain(t, dockerConfig(t, dir, map[string]string{other.Host: "alice:s3cret"}), nil)
			},
			want: facts.CodeUnauthorized,
		},
		{
			desc: "docker config for the bare host only",
			keychain: func(t *testing.T, dir string) *registry.Keychain {
				return mustKeychain(t, dockerConfig(t, dir, map[string]string{"127.0.0.1": "alice:s3cret"}), nil)
			},
			want: facts.CodeUnauthorized,
		},
		{
			desc: "credential files for the registry",
			keychain: func(t *testing.T, dir string) *registry.Keychain {
				return mustKeychain(t, "", []registry.Credential{credFiles(t, dir, reg.Host, "alice", "s3cret")})
			},
		},
		{
			desc: "credential files win over docker config",
			keychain: func(t *testing.T, dir string) *registry.Keychain {
				cfg := dockerConfig(t, dir, map[string]string{reg.Host: "alice:wrong"})
				return mustKeychain(t, cfg, []registry.Credential{credFiles(t, dir, reg.Host, "alice", "s3cret")})
			},
		},
		{
			desc: "credential files for another host only",
			keychain: func(t *testing.T, dir string) *registry.Keychain {
				return mustKeychain(t, "", []registry.Credential{credFiles(t, dir, other.Host, "alice", "s3cret")})
			},
			want: facts.CodeUnauthorized,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			o := registry.Options{}
			if tc.keychain != nil {
				o.Keychain = tc.keychain(t, t.TempDir())
			}
			c := newClient(t, reg.Host, o)
			key := reg.Host + "/team/app:v1"
			f, err := describeKey(t.Context(), c, func(string) bool { return true }, key)
			checkCode(t, fmt.Sprintf("describe %q", key), err, tc.want)
			if err == nil && f.Config == nil {
				t.Errorf("describe %q = %s, want a config", key, js(f))
			}
		})
	}
}

func mustKeychain(t testing.TB, dockerConfig string, creds []registry.Credential) *registry.Keychain {
	t.Helper()
	k, err := registry.NewKeychain(dockerConfig, creds)
	if err != nil {
		t.Fatalf("NewKeychain: %v", err)
	}
	return k
}

// TestCredentialsStayOnTheirHost checks that no credential reaches a
// registry it was not written for, even one on the same IP.
func TestCredentialsStayOnTheirHost(t *testing.T) {
	authReg := registrytest.New(t, registrytest.WithBasicAuth("alice", "s3cret"))
	plain := registrytest.New(t)
	plain.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	var (
		mu   sync.Mutex
		seen []string
	)
	plain.Fail(func(r *http.Request) int {
		if h := r.Header.Get("Authorization"); h != "" {
			mu.Lock()
			seen = append(seen, registrytest.Kind(r)+": "+h)
			mu.Unlock()
		}
		return 0
	})
	dir := t.TempDir()
	cfg := dockerConfig(t, dir, map[string]string{
		authReg.Host: "alice:s3cret",
		"127.0.0.1":  "bob:hunter2",
		"localhost":  "carol:pw",
	})
	k := mustKeychain(t, cfg, []registry.Credential{credFiles(t, dir, authReg.Host, "alice", "s3cret")})
	c := newClient(t, plain.Host, registry.Options{Guard: newGuard(t, plain.Host, authReg.Host), Keychain: k})
	key := plain.Host + "/team/app:v1"
	if _, err := describeKey(t.Context(), c, func(string) bool { return true }, key); err != nil {
		t.Fatalf("describe %q: %v", key, err)
	}
	if plain.Total() == 0 {
		t.Fatal("plain registry saw no requests")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) > 0 {
		t.Errorf("registry %s received credentials written for other hosts: %v", plain.Host, seen)
	}
}

// TestCredentialRotation checks a rotated secret takes effect on a client
// that has already talked to the registry, without a restart.
func TestCredentialRotation(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithBasicAuth("alice", "new-password"))
	reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	for _, tc := range []struct {
		desc   string
		setup  func(t *testing.T, dir string) *registry.Keychain
		rotate func(t *testing.T, dir string)
	}{
		{
			desc: "credential files",
			setup: func(t *testing.T, dir string) *registry.Keychain {
				return mustKeychain(t, "", []registry.Credential{credFiles(t, dir, reg.Host, "alice", "old-password")})
			},
			rotate: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "password"), "new-password\n") },
		},
		{
			desc: "docker config",
			setup: func(t *testing.T, dir string) *registry.Keychain {
				return mustKeychain(t, dockerConfig(t, dir, map[string]string{reg.Host: "alice:old-password"}), nil)
			},
			rotate: func(t *testing.T, dir string) {
				dockerConfig(t, dir, map[string]string{reg.Host: "alice:new-password"})
			},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			c := newClient(t, reg.Host, registry.Options{Keychain: tc.setup(t, dir)})
			key := reg.Host + "/team/app:v1"
			_, err := describeKey(t.Context(), c, func(string) bool { return true }, key)
			checkCode(t, "before rotation: describe "+key, err, facts.CodeUnauthorized)
			tc.rotate(t, dir)
			_, err = describeKey(t.Context(), c, func(string) bool { return true }, key)
			checkCode(t, "after rotation: describe "+key, err, "")
		})
	}
}

func TestNewKeychainErrors(t *testing.T) {
	dir := t.TempDir()
	good := credFiles(t, dir, "ghcr.io", "u", "p")
	badJSON := filepath.Join(dir, "bad.json")
	writeFile(t, badJSON, "{not json")
	for _, tc := range []struct {
		desc   string
		config string
		creds  []registry.Credential
		want   string
	}{
		{desc: "missing docker config", config: filepath.Join(dir, "nope.json"), want: "registries.dockerConfig"},
		{desc: "docker config not json", config: badJSON, want: "registries.dockerConfig"},
		{desc: "credential without registry", creds: []registry.Credential{{UsernameFile: good.UsernameFile, PasswordFile: good.PasswordFile}}, want: "registries.credentials[0]"},
		{desc: "credential without password file", creds: []registry.Credential{{Registry: "ghcr.io", UsernameFile: good.UsernameFile}}, want: "registries.credentials[0]"},
		{desc: "credential file missing", creds: []registry.Credential{good, {Registry: "quay.io", UsernameFile: good.UsernameFile, PasswordFile: filepath.Join(dir, "nope")}}, want: "registries.credentials[1]"},
		{desc: "registry listed twice", creds: []registry.Credential{good, good}, want: "listed twice"},
		{desc: "docker hub aliases listed twice", creds: []registry.Credential{
			{Registry: "docker.io", UsernameFile: good.UsernameFile, PasswordFile: good.PasswordFile},
			{Registry: "index.docker.io", UsernameFile: good.UsernameFile, PasswordFile: good.PasswordFile},
		}, want: "listed twice"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := registry.NewKeychain(tc.config, tc.creds)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewKeychain(%q, %d creds) error = %v, want one mentioning %q", tc.config, len(tc.creds), err, tc.want)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	reg := registrytest.New(t)
	img := registrytest.Build(t, registrytest.Image{Created: created, Labels: map[string]string{"a": "b"}})
	dig := reg.Push(t, "team/app", "v1", img)
	raw, _ := img.RawManifest()
	cfg, _ := img.RawConfigFile()
	idx, _ := reg.PushIndex(t, "team/multi", "v1",
		registrytest.Image{Arch: "amd64"}, registrytest.Image{Arch: "arm64"}, registrytest.Image{Arch: "arm", Variant: "v7"})
	for _, tc := range []struct {
		desc       string
		limits     registry.Limits
		key        string
		want       facts.Code
		wantCounts map[string]int
	}{
		{desc: "manifest at the limit", limits: registry.Limits{ManifestBytes: int64(len(raw))}, key: "/team/app:v1"},
		{
			desc: "manifest over the limit on resolve", limits: registry.Limits{ManifestBytes: int64(len(raw)) - 1}, key: "/team/app:v1",
			want: facts.CodeInvalidContent, wantCounts: map[string]int{"HEAD manifests": 0, "GET manifests": 1, "GET blobs": 0},
		},
		{
			desc: "manifest over the limit on describe", limits: registry.Limits{ManifestBytes: 64}, key: "/team/app@" + dig.String(),
			want: facts.CodeInvalidContent, wantCounts: map[string]int{"GET manifests": 1, "GET blobs": 0},
		},
		{desc: "config at the limit", limits: registry.Limits{ConfigBytes: int64(len(cfg))}, key: "/team/app:v1"},
		{
			desc: "config over the limit", limits: registry.Limits{ConfigBytes: int64(len(cfg)) - 1}, key: "/team/app:v1",
			want: facts.CodeInvalidContent, wantCounts: map[string]int{"GET blobs": 0},
		},
		{desc: "index at the children limit", limits: registry.Limits{Children: 3}, key: "/team/multi:v1"},
		{
			desc: "index over the children limit", limits: registry.Limits{Children: 2}, key: "/team/multi@" + idx.String(),
			want: facts.CodeInvalidContent, wantCounts: map[string]int{"GET manifests": 1, "GET blobs": 0},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := newClient(t, reg.Host, registry.Options{Limits: tc.limits})
			reg.ResetCounts()
			key := reg.Host + tc.key
			_, err := describeKey(t.Context(), c, func(string) bool { return true }, key)
			checkCode(t, fmt.Sprintf("describe %q with %+v", key, tc.limits), err, tc.want)
			for kind, n := range tc.wantCounts {
				if got := reg.Count(kind); got != n {
					t.Errorf("describe %q: registry saw %d %q, want %d", key, got, kind, n)
				}
			}
		})
	}
}

type recorder struct {
	mu  sync.Mutex
	ops map[string]int
}

func (r *recorder) ObserveRegistryRequest(op, result string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d < 0 {
		op += " negative-duration"
	}
	r.ops[op+" "+result]++
}

func (r *recorder) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.ops {
		out[k] = v
	}
	return out
}

func TestObserver(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	throttle := func(r *http.Request) int {
		if registrytest.Kind(r) == "GET manifests" {
			return http.StatusTooManyRequests
		}
		return 0
	}
	for _, tc := range []struct {
		desc  string
		key   string
		allow []string
		fail  func(*http.Request) int
		want  map[string]int
	}{
		{
			desc: "cold image",
			key:  "/team/app:v1",
			want: map[string]int{"ping 200": 1, "manifest_get 200": 1, "blob_get 200": 1},
		},
		{
			desc: "missing tag",
			key:  "/team/app:nope",
			want: map[string]int{"ping 200": 1, "manifest_get 404": 1},
		},
		{
			desc: "throttled",
			key:  "/team/app:v1",
			fail: throttle,
			want: map[string]int{"ping 200": 1, "manifest_get 429": 1 + fastRetry.Steps}, // the early GET, then the usual one
		},
		{
			desc:  "not allowed",
			key:   "/team/app:v1",
			allow: []string{"ghcr.io"},
			want:  map[string]int{},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			rec := &recorder{ops: map[string]int{}}
			o := registry.Options{Observer: rec}
			if tc.allow != nil {
				o.Guard = newGuard(t, tc.allow...)
			}
			c := newClient(t, reg.Host, o)
			reg.Fail(tc.fail)
			defer reg.Fail(nil)
			key := reg.Host + tc.key
			_, _ = describeKey(t.Context(), c, func(string) bool { return true }, key)
			// The first contact pings alongside its first GET: the ping
			// may end after describeKey.
			deadline := time.Now().Add(5 * time.Second)
			for rec.snapshot()["ping 200"] < tc.want["ping 200"] && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			got := rec.snapshot()
			// go-containerregistry pings an insecure registry over https and
			// http at once; the https racer fails (or is cancelled) against
			// a plain-HTTP server, possibly after describeKey returns.
			delete(got, "ping error")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("describe %q observed %v, want %v", key, sortedKeys(got), sortedKeys(tc.want))
			}
		})
	}
}

func sortedKeys(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(out)
	return out
}

// TestResolveFallsBackToGet checks the GET fallback runs only when a HEAD
// answer lacks what a descriptor needs, through a proxy that strips headers.
func TestResolveFallsBackToGet(t *testing.T) {
	reg := registrytest.New(t)
	dig := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	for _, tc := range []struct {
		desc      string
		strip     string // header removed from HEAD manifest answers
		wantHeads int
		wantGets  int
	}{
		{desc: "complete head", wantHeads: 1, wantGets: 0},
		{desc: "no digest header", strip: "Docker-Content-Digest", wantHeads: 1, wantGets: 1},
		{desc: "no content type", strip: "Content-Type", wantHeads: 1, wantGets: 1},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			host, c := proxiedClient(t, reg, func(resp *http.Response) error {
				if tc.strip != "" && resp.Request.Method == http.MethodHead && strings.Contains(resp.Request.URL.Path, "/manifests/") {
					resp.Header.Del(tc.strip)
					if tc.strip == "Content-Type" {
						resp.Header["Content-Type"] = nil // keep net/http from sniffing one
					}
				}
				return nil
			})
			key := host + "/team/app:v1"
			ref := mustParse(t, key, func(string) bool { return true })
			reg.ResetCounts()
			desc, err := c.Resolve(t.Context(), key, *ref.Tag, true)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", key, err)
			}
			if desc.Digest != dig {
				t.Errorf("Resolve(%q) = %s, want %s", key, desc.Digest, dig)
			}
			if got := reg.Count("HEAD manifests"); got != tc.wantHeads {
				t.Errorf("Resolve(%q): registry saw %d HEAD manifests, want %d", key, got, tc.wantHeads)
			}
			if got := reg.Count("GET manifests"); got != tc.wantGets {
				t.Errorf("Resolve(%q): registry saw %d GET manifests, want %d", key, got, tc.wantGets)
			}
		})
	}
}

// TestPullerStateSwapKeepsWorking: lookups keep working when the
// per-repository state starts afresh on every new repository
// (MaxRepositories 1), and when one repository returns after the swap.
func TestPullerStateSwapKeepsWorking(t *testing.T) {
	reg := registrytest.New(t)
	var keys []string
	for _, repo := range []string{"team/a", "team/b", "team/c", "team/a"} {
		if len(keys) < 3 {
			reg.PushImage(t, repo, "v1", registrytest.Image{Created: created})
		}
		keys = append(keys, reg.Host+"/"+repo+":v1")
	}
	c := newClient(t, reg.Host, registry.Options{MaxRepositories: 1})
	for _, k := range keys {
		if _, err := describeKey(t.Context(), c, func(string) bool { return true }, k); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
}
