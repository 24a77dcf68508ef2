package signature_test

import (
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imagegate/imagegate/providers/guard"
	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
)

// client returns a registry client allowed to reach reg (plain HTTP, loopback).
func client(t *testing.T, hosts ...string) *registry.Client {
	t.Helper()
	g, err := guard.New(guard.Options{Allow: hosts, Insecure: hosts, Private: hosts})
	if err != nil {
		t.Fatal(err)
	}
	c, err := registry.New(registry.Options{Guard: g})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var release = signaturetest.Identity{
	Issuer:  "https://token.actions.githubusercontent.com",
	Subject: "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.4.0",
	Extensions: map[string]string{
		"githubWorkflowRepository": "acme/app",
		"githubWorkflowRef":        "refs/tags/v1.4.0",
		"sourceRepositoryURI":      "https://github.com/acme/app",
	},
}

// TestKeylessBundles verifies real v0.3 bundles made by a test Sigstore
// (Fulcio-style CA with SCTs, Rekor entries with inclusion proofs, RFC 3161
// timestamps) attached as OCI referrers the way cosign v3 attaches them.
func TestKeylessBundles(t *testing.T) {
	reg := registrytest.New(t)
	d := reg.PushImage(t, "acme/app", "v1", registrytest.Image{Created: time.Now()})
	desc := v1.Descriptor{MediaType: "application/vnd.docker.distribution.manifest.v2+json", Digest: d}
	_, raw, err := client(t, reg.Host).Manifest(t.Context(), "k", mustDigest(t, reg.Host+"/acme/app@"+d.String()))
	if err != nil {
		t.Fatal(err)
	}
	desc.Size, desc.MediaType = raw.Size, raw.MediaType

	ss := signaturetest.NewSigstore(t)
	other := signaturetest.NewSigstore(t)
	goodRoot := ss.WriteTrustedRoot(t, t.TempDir())
	otherRoot := other.WriteTrustedRoot(t, t.TempDir())

	// A signature and an SLSA attestation by the release workflow, a bundle
	// without an SCT, and one replayed from another image.
	signaturetest.AttachReferrer(t, reg.Host, "acme/app", desc, ss.SignImage(t, release, d.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{}), signature.CosignSignPredicate)
	signaturetest.AttachReferrer(t, reg.Host, "acme/app", desc, ss.SignImage(t, release, d.String(), "https://slsa.dev/provenance/v1", []byte(`{"buildDefinition":{"buildType":"https://example.test/build"},"runDetails":{"builder":{"id":"https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.4.0"}}}`), signaturetest.BundleOptions{}), "https://slsa.dev/provenance/v1")
	signaturetest.AttachReferrer(t, reg.Host, "acme/app", desc, ss.SignImage(t, release, d.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{NoSCT: true}), signature.CosignSignPredicate)
	replayed := "sha256:" + strings.Repeat("ab", 32)
	signaturetest.AttachReferrer(t, reg.Host, "acme/app", desc, ss.SignImage(t, release, replayed, signature.CosignSignPredicate, nil, signaturetest.BundleOptions{}), signature.CosignSignPredicate)
	// Expired: a leaf valid only in the past, signed (logged) now.
	signaturetest.AttachReferrer(t, reg.Host, "acme/app", desc, ss.SignImage(t, release, d.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{
		NotBefore: time.Now().Add(-3 * time.Hour), NotAfter: time.Now().Add(-2 * time.Hour),
	}), signature.CosignSignPredicate)

	image := reg.Host + "/acme/app@" + d.String()
	for _, tc := range []struct {
		desc       string
		roots      map[string]string
		wantSigs   int
		wantAtts   int
		wantErrors []string
	}{
		{
			desc: "trusted root", roots: map[string]string{"test": goodRoot}, wantSigs: 1, wantAtts: 1,
			wantErrors: []string{
				"bundle subject is " + replayed + ", image is " + d.String(),
				`not verified by trusted root "test"`, // missing SCT
				`not verified by trusted root "test"`, // expired certificate
			},
		},
		{
			desc: "another root", roots: map[string]string{"other": otherRoot},
			wantErrors: []string{`not verified by trusted root "other"`, `not verified by trusted root "other"`, `not verified by trusted root "other"`, `not verified by trusted root "other"`, "bundle subject is"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			v, err := signature.New(signature.Options{TrustedRoots: tc.roots}, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Check(t.Context(), client(t, reg.Host), image, mustDigest(t, image))
			if err != nil {
				t.Fatalf("Check() error = %v", err)
			}
			if len(res.Signatures) != tc.wantSigs || len(res.Attestations) != tc.wantAtts {
				t.Fatalf("got %d signatures, %d attestations (errors %q), want %d, %d", len(res.Signatures), len(res.Attestations), res.Errors, tc.wantSigs, tc.wantAtts)
			}
			for _, s := range res.Signatures {
				if s.Format != "bundle" || s.Digest != d.String() || s.Signer.Kind != "keyless" ||
					s.Signer.Issuer != release.Issuer || s.Signer.Subject != release.Subject ||
					s.Signer.Extensions["githubWorkflowRepository"] != "acme/app" || s.Signer.Extensions["sourceRepositoryURI"] != "https://github.com/acme/app" ||
					s.Timestamp == "" {
					t.Errorf("signature = %+v", s)
				}
			}
			for _, a := range res.Attestations {
				if a.PredicateType != "https://slsa.dev/provenance/v1" || a.Signer.Subject != release.Subject || !strings.Contains(string(a.Predicate), "acme/app") {
					t.Errorf("attestation = %+v", a)
				}
			}
			t.Logf("verificationErrors: %q", res.Errors)
			if len(res.Errors) != len(tc.wantErrors) {
				t.Fatalf("errors = %q, want %d errors", res.Errors, len(tc.wantErrors))
			}
			for _, want := range tc.wantErrors {
				found := false
				for _, e := range res.Errors {
					found = found || strings.Contains(e, want)
				}
				if !found {
					t.Errorf("errors = %q, want one mentioning %q", res.Errors, want)
				}
			}
		})
	}
}
