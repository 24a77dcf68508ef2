// Package benchfix builds the fixture the benchmarks share: a real in-process
// OCI registry (registrytest) holding signed images — keyless Sigstore
// bundles from the offline test Sigstore, attached as OCI referrers — and
// the signature-rule policy params that accept them.
package benchfix

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
	"github.com/imagegate/imagegate/server/config"
)

// Identity is the keyless signer of every fixture image.
var Identity = signaturetest.Identity{
	Issuer:  "https://token.actions.githubusercontent.com",
	Subject: "https://github.com/team/app/.github/workflows/release.yml@refs/tags/v1",
}

// Images is a registry with n signed images.
type Images struct {
	Reg *registrytest.Registry
	// Keys are the images as repo:tag@digest, one repository per image.
	Keys []string
	// TrustedRoot is the test Sigstore's trusted_root.json.
	TrustedRoot string
}

// Signed pushes n single-platform images, each signed by Identity.
func Signed(t testing.TB, n int) *Images {
	t.Helper()
	reg := registrytest.New(t)
	ss := signaturetest.NewSigstore(t)
	im := &Images{Reg: reg, TrustedRoot: ss.WriteTrustedRoot(t, t.TempDir())}
	for i := range n {
		repo := fmt.Sprintf("team/app-%03d", i)
		d := reg.PushImage(t, repo, "v1", registrytest.Image{Created: time.Now(), Labels: map[string]string{"org.opencontainers.image.source": "https://github.com/team/app"}})
		bundle := ss.SignImage(t, Identity, d.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{})
		signaturetest.AttachReferrer(t, reg.Host, repo, Subject(t, reg.Host, repo, d), bundle, signature.CosignSignPredicate)
		im.Keys = append(im.Keys, reg.Host+"/"+repo+":v1@"+d.String())
	}
	return im
}

// Params are policy.params with the signature rule requiring Identity.
func Params() map[string]any {
	return map[string]any{
		"rules": map[string]any{
			"signature": map[string]any{"signers": []any{map[string]any{"issuer": Identity.Issuer, "subject": Identity.Subject}}},
		},
	}
}

// Config returns a serve config allowing im's registry, trusting its
// Sigstore, with the signature rule on and caches that stay warm for the
// whole run (tagTTL 1h).
func (im *Images) Config(t testing.TB) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Registries.Allow = []string{im.Reg.Host}
	cfg.Registries.Insecure = []string{im.Reg.Host}
	cfg.Registries.Private = []string{im.Reg.Host}
	cfg.Trust.TrustedRoots = map[string]string{"test": im.TrustedRoot}
	cfg.Policy.Params = Params()
	cfg.Cache.TagTTL = config.Duration(time.Hour)
	return cfg
}

// Subject is the descriptor of host/repo@d (a HEAD request), the subject of
// a referrer.
func Subject(t testing.TB, host, repo string, d v1.Hash) v1.Descriptor {
	t.Helper()
	ref, err := name.NewDigest(host+"/"+repo+"@"+d.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}
}
