package registry_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/lookup"
	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestDistributionRegistry(t *testing.T) {
	host := registrytest.StartDistribution(t)

	// A single-platform image and a two-platform index, pushed with ggcr.
	img := registrytest.Build(t, registrytest.Image{
		Created: created, User: "65532", Labels: map[string]string{"org.opencontainers.image.version": "1.0"},
	})
	imgDigest, _ := img.Digest()
	imgConfig, _ := img.ConfigName()
	imgMediaType, _ := img.MediaType()
	if err := remote.Write(mustRef(t, host+"/team/app:v1"), img); err != nil {
		t.Fatalf("push image: %v", err)
	}
	specs := []registrytest.Image{
		{Created: created, OS: "linux", Arch: "amd64", Labels: map[string]string{"arch": "amd64"}},
		{Created: created.Add(time.Hour), OS: "linux", Arch: "arm64", Variant: "v8"},
	}
	idx, children := registrytest.BuildIndex(t, specs...)
	idxDigest, _ := idx.Digest()
	if err := remote.WriteIndex(mustRef(t, host+"/team/multi:v1"), idx); err != nil {
		t.Fatalf("push index: %v", err)
	}

	clk := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	rec := &recorder{ops: map[string]int{}}
	g := newGuard(t, host)
	c := newClient(t, host, registry.Options{Guard: g, Observer: rec})
	svc, err := lookup.New(lookup.Options{Registry: c, Insecure: g.Insecure, Now: clk.Now, TagTTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("single-platform image", func(t *testing.T) {
		for _, tc := range []struct {
			desc string
			key  string
			ref  facts.Reference
		}{
			{desc: "by tag", key: host + "/team/app:v1", ref: facts.Reference{Registry: host, Repository: "team/app", Tag: "v1"}},
			{desc: "by digest", key: host + "/team/app@" + imgDigest.String(), ref: facts.Reference{Registry: host, Repository: "team/app", Digest: imgDigest.String()}},
		} {
			t.Run(tc.desc, func(t *testing.T) {
				f, err := svc.Facts(t.Context(), tc.key)
				if err != nil {
					t.Fatalf("Facts(%q): %v", tc.key, err)
				}
				wantCfg := &facts.Config{
					Created: "2024-05-06T07:08:07Z", User: "65532",
					Labels: facts.LabelsOf(map[string]string{"org.opencontainers.image.version": "1.0"}),
					OS:     "linux", Architecture: "amd64", Digest: imgConfig.String(),
				}
				if f.Image != tc.key || f.Reference != tc.ref || f.Digest != imgDigest.String() || f.MediaType != string(imgMediaType) || len(f.Platforms) != 0 {
					t.Errorf("Facts(%q) = %s, want image %q reference %+v digest %s mediaType %s, no platforms", tc.key, js(f), tc.key, tc.ref, imgDigest, imgMediaType)
				}
				if !reflect.DeepEqual(f.Config, wantCfg) {
					t.Errorf("Facts(%q).Config = %s, want %s", tc.key, js(f.Config), js(wantCfg))
				}
			})
		}
	})

	t.Run("two-platform index", func(t *testing.T) {
		key := host + "/team/multi:v1"
		f, err := svc.Facts(t.Context(), key)
		if err != nil {
			t.Fatalf("Facts(%q): %v", key, err)
		}
		if f.Digest != idxDigest.String() || f.MediaType != string(types.OCIImageIndex) || f.Config != nil {
			t.Errorf("Facts(%q) = digest %s mediaType %s config %s, want %s %s and no config", key, f.Digest, f.MediaType, js(f.Config), idxDigest, types.OCIImageIndex)
		}
		if len(f.Platforms) != len(specs) {
			t.Fatalf("Facts(%q) platforms = %s, want %d", key, js(f.Platforms), len(specs))
		}
		for i, s := range specs {
			p := f.Platforms[i]
			labels := s.Labels
			if labels == nil {
				labels = map[string]string{}
			}
			if p.OS != s.OS || p.Architecture != s.Arch || p.Variant != s.Variant || p.Digest != children[i].String() {
				t.Errorf("platform %d = %s, want %s/%s/%s %s", i, js(p), s.OS, s.Arch, s.Variant, children[i])
			}
			if p.Config == nil || p.Config.Created != s.Created.UTC().Format(time.RFC3339) || !reflect.DeepEqual(p.Config.Labels.Map(), labels) ||
				p.Config.OS != s.OS || p.Config.Architecture != s.Arch || p.Config.Variant != s.Variant {
				t.Errorf("platform %d config = %s, want created %s labels %v", i, js(p.Config), s.Created.UTC().Format(time.RFC3339), labels)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			desc string
			key  string
			want facts.Code
		}{
			{desc: "missing tag", key: host + "/team/app:nope", want: facts.CodeNotFound},
			{desc: "missing repository", key: host + "/team/nothing:v1", want: facts.CodeNotFound},
			{desc: "missing digest", key: host + "/team/app@sha256:" + fmt.Sprintf("%064d", 0), want: facts.CodeNotFound},
			{desc: "invalid reference", key: host + "/team//app:v1", want: facts.CodeInvalidReference},
			{desc: "registry not allowed", key: "ghcr.io/team/app:v1", want: facts.CodeNotAllowed},
		} {
			t.Run(tc.desc, func(t *testing.T) {
				_, err := svc.Facts(t.Context(), tc.key)
				checkCode(t, fmt.Sprintf("Facts(%q)", tc.key), err, tc.want)
			})
		}
	})

	t.Run("digest resolves with one HEAD", func(t *testing.T) {
		key := host + "/team/multi:v1"
		clk.Advance(time.Minute) // past the tag TTL
		before := rec.snapshot()
		p, err := svc.Digest(t.Context(), key)
		if err != nil {
			t.Fatalf("Digest(%q): %v", key, err)
		}
		if p.Digest != idxDigest.String() || p.Reference(true) != key+"@"+idxDigest.String() {
			t.Errorf("Digest(%q) = %+v, want %s", key, p, idxDigest)
		}
		after := rec.snapshot()
		if d := after["manifest_head 200"] - before["manifest_head 200"]; d != 1 {
			t.Errorf("Digest(%q) made %d manifest HEADs, want 1", key, d)
		}
		if d := after["manifest_get 200"] - before["manifest_get 200"]; d != 0 {
			t.Errorf("Digest(%q) made %d manifest GETs, want 0", key, d)
		}
	})

	t.Run("tag move", func(t *testing.T) {
		key := host + "/team/app:v1@" + imgDigest.String()
		f, err := svc.Facts(t.Context(), key)
		if err != nil {
			t.Fatalf("Facts(%q): %v", key, err)
		}
		if f.TagDigest != imgDigest.String() || f.Digest != imgDigest.String() {
			t.Fatalf("Facts(%q) = digest %s tagDigest %s, want both %s", key, f.Digest, f.TagDigest, imgDigest)
		}
		next := registrytest.Build(t, registrytest.Image{Created: created.Add(24 * time.Hour)})
		nextDigest, _ := next.Digest()
		if err := remote.Write(mustRef(t, host+"/team/app:v1"), next); err != nil {
			t.Fatalf("push new image: %v", err)
		}
		clk.Advance(31 * time.Second)
		f, err = svc.Facts(t.Context(), key)
		if err != nil {
			t.Fatalf("Facts(%q) after the move: %v", key, err)
		}
		if f.TagDigest != nextDigest.String() || f.Digest != imgDigest.String() || f.Config == nil || f.Config.Created != "2024-05-06T07:08:07Z" {
			t.Errorf("Facts(%q) after the move = digest %s tagDigest %s config %s, want digest %s (its own config) tagDigest %s",
				key, f.Digest, f.TagDigest, js(f.Config), imgDigest, nextDigest)
		}
	})

	t.Run("deleted manifest", func(t *testing.T) {
		key := host + "/team/app@" + imgDigest.String()
		if err := remote.Delete(mustRef(t, key)); err != nil {
			t.Fatalf("delete %s: %v", key, err)
		}
		// A fresh service: the old one has these facts cached by digest,
		// which is right for content-addressed data.
		fresh, err := lookup.New(lookup.Options{Registry: c, Insecure: g.Insecure})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err = fresh.Facts(ctx, key)
		checkCode(t, fmt.Sprintf("Facts(%q) after delete", key), err, facts.CodeNotFound)
		if _, err := svc.Facts(ctx, key); err != nil {
			t.Errorf("cached Facts(%q) after delete: %v, want the cached facts", key, err)
		}
	})
}
