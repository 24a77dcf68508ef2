package registry_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

// TestResolveRefusesDigestMismatch: on first sight Resolve GETs the tag; a
// body that is not the content of the Docker-Content-Digest sent with it is
// refused (transient, as a GET by digest with the wrong body), and nothing
// of it is kept: the describe of the real digest GETs the manifest.
func TestResolveRefusesDigestMismatch(t *testing.T) {
	reg := registrytest.New(t)
	dig := reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: created})
	other := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		desc   string
		modify func(resp *http.Response) error
	}{
		{desc: "header names another digest", modify: func(resp *http.Response) error {
			resp.Header.Set("Docker-Content-Digest", other)
			return nil
		}},
		{desc: "body is not the content of the header's digest", modify: func(resp *http.Response) error {
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			resp.Body.Close()
			b = append(b, ' ') // still valid JSON, another digest
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
			return nil
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			host, c := proxiedClient(t, reg, func(resp *http.Response) error {
				if resp.Request.Method == http.MethodGet && strings.HasSuffix(resp.Request.URL.Path, "/manifests/v1") {
					return tc.modify(resp)
				}
				return nil
			})
			key := host + "/team/app:v1"
			ref := mustParse(t, key, func(string) bool { return true })
			reg.ResetCounts()
			_, err := c.Resolve(t.Context(), key, *ref.Tag, false)
			checkCode(t, "Resolve("+key+")", err, facts.CodeUnavailable)
			if !strings.Contains(err.Error(), "not the content of its digest") {
				t.Errorf("Resolve(%q) error = %q, want it to say the body is not its digest's content", key, err)
			}
			if _, err := c.Describe(t.Context(), key, ref.Repository().Digest(dig.String())); err != nil {
				t.Fatalf("Describe(%q@%s): %v", key, dig, err)
			}
			if n := reg.CountPath("GET manifests", "/manifests/"+dig.String()); n != 1 {
				t.Errorf("Describe after a refused tag body: %d GETs by digest, want 1 (nothing kept from the refused body)", n)
			}
		})
	}
}

// TestFirstSightBodyIsPerRepository: a body read by a tag of one repository
// does not describe the same digest in another repository (readable content
// in one says nothing about the other), and is handed over once.
func TestFirstSightBodyIsPerRepository(t *testing.T) {
	reg := registrytest.New(t)
	img := registrytest.Build(t, registrytest.Image{Created: created})
	dig := reg.Push(t, "team/a", "v1", img)
	reg.Push(t, "team/b", "v1", img)
	c := newClient(t, reg.Host, registry.Options{})
	a := mustParse(t, reg.Host+"/team/a:v1", func(string) bool { return true })
	b := mustParse(t, reg.Host+"/team/b:v1", func(string) bool { return true })
	if _, err := c.Resolve(t.Context(), a.Key, *a.Tag, false); err != nil {
		t.Fatal(err)
	}
	reg.ResetCounts()
	if _, err := c.Describe(t.Context(), b.Key, b.Repository().Digest(dig.String())); err != nil {
		t.Fatal(err)
	}
	if n := reg.CountPath("GET manifests", "/team/b/manifests/"+dig.String()); n != 1 {
		t.Errorf("describe in team/b: %d GETs by digest there, want 1 (team/a's body is not team/b's)", n)
	}
	for i, want := range []int{0, 1} {
		reg.ResetCounts()
		if _, err := c.Describe(t.Context(), a.Key, a.Repository().Digest(dig.String())); err != nil {
			t.Fatal(err)
		}
		if n := reg.CountPath("GET manifests", "/team/a/manifests/"+dig.String()); n != want {
			t.Errorf("describe %d in team/a: %d GETs by digest, want %d (the tag's body is handed over once)", i+1, n, want)
		}
	}
}
