package signature_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/guard"
	"github.com/imagegate/imagegate/providers/lookup"
	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
)

const slsaV1 = "https://slsa.dev/provenance/v1"

var provenance = []byte(`{"buildDefinition":{"buildType":"https://example.test/build/v1","externalParameters":{}},"runDetails":{"builder":{"id":"https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1"}}}`)

// service builds the facts service as the server does, verifying with keys.
func service(t *testing.T, host string, keys map[string]string) *lookup.Service {
	t.Helper()
	g, err := guard.New(guard.Options{Allow: []string{host}, Insecure: []string{host}, Private: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := registry.New(registry.Options{Guard: g})
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.New(signature.Options{Keys: keys}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := lookup.New(lookup.Options{Registry: rc, Insecure: g.Insecure, Signatures: sv})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func factsFor(t *testing.T, s *lookup.Service, key string) *facts.Facts {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	f, err := s.Facts(ctx, key)
	if err != nil {
		t.Fatalf("Facts(%q) error = %v", key, err)
	}
	return f
}

// TestCosignSignedImages signs and attests with real cosign v3 and v2, in both
// storage layouts, on a registry with the referrers API (ggcr) and one
// without (distribution: the sha256-<hex> fallback tag), and checks that every
// signature and attestation is found and verified, and that another key finds
// nothing it trusts.
func TestCosignSignedImages(t *testing.T) {
	registries := map[string]func(t *testing.T) string{
		"ggcr":         func(t *testing.T) string { return registrytest.New(t).Host },
		"distribution": func(t *testing.T) string { return registrytest.StartDistribution(t) },
	}
	for _, major := range []string{"v3", "v2"} {
		t.Run("cosign "+major, func(t *testing.T) {
			cosign := signaturetest.FindCosign(t, major)
			key := cosign.GenerateKeyPair(t, t.TempDir())
			other := cosign.GenerateKeyPair(t, t.TempDir())
			for regName, start := range registries {
				t.Run(regName, func(t *testing.T) {
					host := start(t)
					d := pushImage(t, host, "acme/app")
					image := host + "/acme/app@" + d.String()
					for _, layout := range []signaturetest.Layout{signaturetest.Bundle, signaturetest.Legacy} {
						cosign.Sign(t, key, image, layout)
						cosign.Attest(t, key, image, layout, slsaV1, provenance)
					}

					f := factsFor(t, service(t, host, map[string]string{"release": key.PublicKey}), image)
					if len(f.VerificationErrors) != 0 {
						t.Errorf("verificationErrors = %q, want none", f.VerificationErrors)
					}
					formats := map[string]bool{}
					for _, s := range f.Signatures {
						formats["sig "+s.Format] = true
						if s.Signer.Kind != "key" || s.Signer.Key != "release" || s.Digest != d.String() {
							t.Errorf("signature = %+v, want key release over %s", s, d)
						}
					}
					for _, a := range f.Attestations {
						formats["att "+a.Format] = true
						if a.PredicateType != slsaV1 || a.Signer.Key != "release" || !strings.Contains(string(a.Predicate), "acme/app/.github/workflows/release.yml") {
							t.Errorf("attestation = %+v", a)
						}
					}
					for _, want := range []string{"sig bundle", "sig legacy", "att bundle", "att legacy"} {
						if !formats[want] {
							t.Errorf("no verified %s found; signatures %+v attestations %d errors %q", want, f.Signatures, len(f.Attestations), f.VerificationErrors)
						}
					}
					if len(f.Signatures) != 2 || len(f.Attestations) != 2 {
						t.Errorf("%d signatures, %d attestations, want 2 and 2", len(f.Signatures), len(f.Attestations))
					}

					g := factsFor(t, service(t, host, map[string]string{"ci": other.PublicKey}), image)
					if len(g.Signatures)+len(g.Attestations) != 0 || len(g.VerificationErrors) != 4 {
						t.Fatalf("with another key: %d signatures, %d attestations, errors %q; want none verified and 4 errors", len(g.Signatures), len(g.Attestations), g.VerificationErrors)
					}
					for _, e := range g.VerificationErrors {
						if !strings.Contains(e, "signed by a key not in config (tried ci)") {
							t.Errorf("verificationError %q does not say the key is not in config", e)
						}
					}
				})
			}
		})
	}
}

// TestCosignReplayAndTamper moves real cosign signatures onto another image,
// and tampers with a legacy payload: nothing may verify, each for its reason.
func TestCosignReplayAndTamper(t *testing.T) {
	cosign := signaturetest.FindCosign(t, "v3")
	key := cosign.GenerateKeyPair(t, t.TempDir())
	reg := registrytest.New(t)
	signed := pushImage(t, reg.Host, "acme/app")
	victim := pushImage(t, reg.Host, "acme/app")
	signedRef := reg.Host + "/acme/app@" + signed.String()
	for _, layout := range []signaturetest.Layout{signaturetest.Bundle, signaturetest.Legacy} {
		cosign.Sign(t, key, signedRef, layout)
		cosign.Attest(t, key, signedRef, layout, slsaV1, provenance)
	}
	repo := mustRepo(t, reg.Host+"/acme/app")

	// Legacy: copy the .sig and .att manifests to the victim's tags.
	for _, suffix := range []string{".sig", ".att"} {
		copyManifest(t, repo.Tag(tagFor(signed)+suffix), repo.Tag(tagFor(victim)+suffix))
	}
	// Bundles: attach the signed image's bundle referrers to the victim.
	idx, err := remote.Referrers(repo.Digest(signed.String()))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	victimDesc := describe(t, repo.Digest(victim.String()))
	for _, r := range im.Manifests {
		m := getManifest(t, repo.Digest(r.Digest.String()))
		m.Subject = &victimDesc
		putManifest(t, repo, m)
	}

	f := factsFor(t, service(t, reg.Host, map[string]string{"release": key.PublicKey}), reg.Host+"/acme/app@"+victim.String())
	if len(f.Signatures)+len(f.Attestations) != 0 {
		t.Fatalf("replayed signatures verified: %+v %+v", f.Signatures, f.Attestations)
	}
	want := []string{
		"bundle subject is " + signed.String() + ", image is " + victim.String(),
		"bundle subject is " + signed.String() + ", image is " + victim.String(),
		"legacy .sig layer 0: signed payload is for " + signed.String() + ", image is " + victim.String(),
		"legacy .att layer 0: attestation subject is " + signed.String() + ", image is " + victim.String(),
	}
	assertErrors(t, f.VerificationErrors, want)

	// Tamper: re-sign nothing, but change the payload the .sig points to.
	tamperLegacySig(t, repo, signed)
	f = factsFor(t, service(t, reg.Host, map[string]string{"release": key.PublicKey}), signedRef)
	for _, s := range f.Signatures {
		if s.Format == "legacy" {
			t.Errorf("tampered legacy signature verified: %+v", s)
		}
	}
	assertErrors(t, f.VerificationErrors, []string{"legacy .sig layer 0: signed by a key not in config (tried release)"})
}

// TestCosignMultiArch: `cosign sign --recursive` signs the index and every
// platform; signing only the index leaves the platforms unsigned, and signing
// only the platforms leaves the index unsigned. Facts say which is which.
func TestCosignMultiArch(t *testing.T) {
	cosign := signaturetest.FindCosign(t, "v3")
	key := cosign.GenerateKeyPair(t, t.TempDir())
	reg := registrytest.New(t)
	svc := service(t, reg.Host, map[string]string{"release": key.PublicKey})
	platforms := []registrytest.Image{{Arch: "amd64", Created: time.Now()}, {Arch: "arm64", Created: time.Now()}}

	recursive, _ := reg.PushIndex(t, "acme/multi", "recursive", platforms...)
	cosign.Sign(t, key, reg.Host+"/acme/multi@"+recursive.String(), signaturetest.Bundle, "--recursive")
	indexOnly, _ := reg.PushIndex(t, "acme/multi", "index-only", platforms[0], registrytest.Image{Arch: "arm64", Created: time.Now().Add(time.Second)})
	cosign.Sign(t, key, reg.Host+"/acme/multi@"+indexOnly.String(), signaturetest.Bundle)
	childrenOnly, children := reg.PushIndex(t, "acme/multi", "children-only", registrytest.Image{Arch: "amd64", Created: time.Now().Add(2 * time.Second)}, registrytest.Image{Arch: "arm64", Created: time.Now().Add(3 * time.Second)})
	for _, c := range children {
		cosign.Sign(t, key, reg.Host+"/acme/multi@"+c.String(), signaturetest.Legacy)
	}

	for _, tc := range []struct {
		desc          string
		digest        v1.Hash
		index, childs bool
	}{
		{desc: "recursive", digest: recursive, index: true, childs: true},
		{desc: "index only", digest: indexOnly, index: true},
		{desc: "children only", digest: childrenOnly, childs: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			f := factsFor(t, svc, reg.Host+"/acme/multi@"+tc.digest.String())
			if got := len(f.Signatures) == 1 && f.Signatures[0].Digest == tc.digest.String(); got != tc.index {
				t.Errorf("index signed = %v (%+v), want %v", got, f.Signatures, tc.index)
			}
			if len(f.Platforms) != 2 {
				t.Fatalf("%d platforms, want 2", len(f.Platforms))
			}
			for _, p := range f.Platforms {
				if got := len(p.Signatures) == 1 && p.Signatures[0].Digest == p.Digest && p.Signatures[0].Signer.Key == "release"; got != tc.childs {
					t.Errorf("platform %s/%s signed = %v (%+v, errors %q), want %v", p.OS, p.Architecture, got, p.Signatures, p.VerificationErrors, tc.childs)
				}
			}
		})
	}
}

func pushImage(t *testing.T, host, repo string) v1.Hash {
	t.Helper()
	img := registrytest.Build(t, registrytest.Image{Created: time.Now()})
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repo+"@"+d.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return d
}

func tagFor(d v1.Hash) string { return d.Algorithm + "-" + d.Hex }

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func copyManifest(t *testing.T, from, to name.Reference) {
	t.Helper()
	desc, err := remote.Get(from)
	if err != nil {
		t.Fatalf("get %s: %v", from, err)
	}
	if err := remote.Put(to, desc); err != nil {
		t.Fatalf("put %s: %v", to, err)
	}
}

func describe(t *testing.T, ref name.Reference) v1.Descriptor {
	t.Helper()
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}
}

func assertErrors(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("verificationErrors = %q, want %d errors like %q", got, len(want), want)
	}
	used := make([]bool, len(got))
	for _, w := range want {
		ok := false
		for i, g := range got {
			if !used[i] && strings.Contains(g, w) {
				used[i], ok = true, true
				break
			}
		}
		if !ok {
			t.Errorf("verificationErrors = %q, want one containing %q", got, w)
		}
	}
}
