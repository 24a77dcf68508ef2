package signature_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
)

// TestTUFTrustedRoot fetches a trusted root from a real (offline, signed)
// TUF repository at startup and verifies keyless bundles and a key that
// requires a log entry with it; checks go to the registry only, never to
// the mirror.
func TestTUFTrustedRoot(t *testing.T) {
	ss := signaturetest.NewSigstore(t)
	repo := signaturetest.NewTUFRepository(t, map[string][]byte{"trusted_root.json": ss.TrustedRootJSON(t)})
	rootFile := repo.WriteRoot(t, t.TempDir())
	cache := t.TempDir()

	reg := registrytest.New(t)
	d := reg.PushImage(t, "acme/app", "v1", registrytest.Image{Created: time.Now()})
	image := reg.Host + "/acme/app@" + d.String()
	_, raw, err := client(t, reg.Host).Manifest(t.Context(), "k", mustDigest(t, image))
	if err != nil {
		t.Fatal(err)
	}
	desc := v1.Descriptor{MediaType: raw.MediaType, Size: raw.Size, Digest: d}
	signaturetest.AttachReferrer(t, reg.Host, "acme/app", desc, ss.SignImage(t, release, d.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{}), signature.CosignSignPredicate)
	key := signaturetest.NewSigningKey(t)
	signaturetest.AttachReferrer(t, reg.Host, "acme/app", desc, ss.SignImageWithKey(t, key, d.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{NoTimestamp: true}), signature.CosignSignPredicate)

	opts := signature.Options{
		Keys:       map[string]string{"release": key.WritePublicKey(t, t.TempDir())},
		KeyOptions: map[string]signature.KeyOptions{"release": {RequireTlog: true, TrustedRoot: "sigstore-test"}},
		TUF:        []signature.TUFRoot{{Name: "sigstore-test", Mirror: repo.URL, RootFile: rootFile, CachePath: cache}},
	}
	v, err := signature.New(opts, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	fetched := repo.Requests()
	if fetched == 0 {
		t.Fatal("New() did not contact the TUF mirror")
	}
	for range 3 {
		res, err := v.Check(t.Context(), client(t, reg.Host), image, mustDigest(t, image))
		if err != nil {
			t.Fatalf("Check() error = %v", err)
		}
		if len(res.Errors) != 0 || len(res.Signatures) != 2 {
			t.Fatalf("signatures %+v, errors %q; want 2 verified", res.Signatures, res.Errors)
		}
		kinds := map[string]bool{}
		for _, s := range res.Signatures {
			kinds[s.Signer.Kind] = true
			if s.Timestamp == "" {
				t.Errorf("signature %+v has no timestamp", s)
			}
			if s.Signer.Kind == "keyless" && (s.Signer.Issuer != release.Issuer || s.Signer.Subject != release.Subject) {
				t.Errorf("keyless signer = %+v", s.Signer)
			}
		}
		if !kinds["keyless"] || !kinds["key"] {
			t.Errorf("signatures %+v, want one keyless and one by key release", res.Signatures)
		}
	}
	if n := repo.Requests(); n != fetched {
		t.Errorf("the mirror got %d requests after startup, want none (fetched in New and at Refresh only, never per check)", n-fetched)
	}
	if _, err := os.Stat(filepath.Join(cache, strings.NewReplacer("http://", "", ":", "-", "/", "-").Replace(repo.URL), "timestamp.json")); err != nil {
		t.Errorf("TUF cache not written under cachePath: %v", err)
	}
	// A restart with the cache present still updates from the mirror.
	if _, err := signature.New(opts, nil); err != nil {
		t.Errorf("New() with a warm cache error = %v", err)
	}
}

// TestTUFStartupErrors: whatever goes wrong fetching a TUF root fails
// startup, naming the entry and the mirror.
func TestTUFStartupErrors(t *testing.T) {
	ss := signaturetest.NewSigstore(t)
	rootJSON := ss.TrustedRootJSON(t)

	// A mirror (or CDN) serving other bytes under the signed target name:
	// of the same length (only the hash tells), and another Sigstore's root.
	tampered := signaturetest.NewTUFRepository(t, map[string][]byte{"trusted_root.json": rootJSON})
	sameLength := bytes.Replace(rootJSON, []byte("https://rekor.localhost"), []byte("https://evilr.localhost"), 1)
	if len(sameLength) != len(rootJSON) || bytes.Equal(sameLength, rootJSON) {
		t.Fatal("could not make a same-length tampered trusted root")
	}
	tampered.TamperTarget(t, "trusted_root.json", sameLength)
	replaced := signaturetest.NewTUFRepository(t, map[string][]byte{"trusted_root.json": rootJSON})
	replaced.TamperTarget(t, "trusted_root.json", signaturetest.NewSigstore(t).TrustedRootJSON(t))

	good := signaturetest.NewTUFRepository(t, map[string][]byte{"trusted_root.json": rootJSON})
	stranger := signaturetest.NewTUFRepository(t, map[string][]byte{"trusted_root.json": rootJSON})
	noTarget := signaturetest.NewTUFRepository(t, map[string][]byte{"other.json": []byte("{}")})
	dir := t.TempDir()

	for _, tc := range []struct {
		desc  string
		tuf   signature.TUFRoot
		roots map[string]string
		want  []string
	}{
		{
			desc: "tampered target",
			tuf:  signature.TUFRoot{Name: "corp", Mirror: tampered.URL, RootFile: tampered.WriteRoot(t, t.TempDir())},
			want: []string{"trust.tuf[0]", `"corp"`, "mirror " + tampered.URL, "trusted_root.json", "hash verification failed"},
		},
		{
			desc: "replaced target",
			tuf:  signature.TUFRoot{Name: "corp", Mirror: replaced.URL, RootFile: replaced.WriteRoot(t, t.TempDir())},
			want: []string{"trust.tuf[0]", "mirror " + replaced.URL, "trusted_root.json", "length"},
		},
		{
			desc: "root.json of another repository",
			tuf:  signature.TUFRoot{Name: "corp", Mirror: good.URL, RootFile: stranger.WriteRoot(t, t.TempDir())},
			want: []string{"trust.tuf[0]", "mirror " + good.URL, "TUF update"},
		},
		{
			desc: "no trusted_root.json target",
			tuf:  signature.TUFRoot{Name: "corp", Mirror: noTarget.URL, RootFile: noTarget.WriteRoot(t, t.TempDir())},
			want: []string{"trust.tuf[0]", "mirror " + noTarget.URL, "trusted_root.json"},
		},
		{
			desc: "mirror unreachable",
			tuf:  signature.TUFRoot{Name: "corp", Mirror: "http://127.0.0.1:1", RootFile: good.WriteRoot(t, t.TempDir())},
			want: []string{"trust.tuf[0]", "mirror http://127.0.0.1:1"},
		},
		{
			desc: "missing root file",
			tuf:  signature.TUFRoot{Name: "corp", Mirror: good.URL, RootFile: filepath.Join(dir, "nope.json")},
			want: []string{"trust.tuf[0]", "rootFile", "nope.json"},
		},
		{
			desc: "no root file for a private mirror",
			tuf:  signature.TUFRoot{Name: "corp", Mirror: good.URL},
			want: []string{"trust.tuf[0]", "rootFile is required"},
		},
		{
			desc: "not a URL",
			tuf:  signature.TUFRoot{Name: "corp", Mirror: "tuf.corp.example", RootFile: good.WriteRoot(t, t.TempDir())},
			want: []string{"trust.tuf[0]", "mirror must be an http(s) URL"},
		},
		{
			desc:  "name taken by a trusted root file",
			tuf:   signature.TUFRoot{Name: "corp", Mirror: good.URL, RootFile: good.WriteRoot(t, t.TempDir())},
			roots: map[string]string{"corp": ss.WriteTrustedRoot(t, t.TempDir())},
			want:  []string{"trust.tuf[0].name", "trust.trustedRoots.corp"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := signature.New(signature.Options{TrustedRoots: tc.roots, TUF: []signature.TUFRoot{tc.tuf}, TUFTimeout: 5 * time.Second}, nil)
			if err == nil {
				t.Fatal("New() error = nil")
			}
			t.Logf("New() error = %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New() error = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}
