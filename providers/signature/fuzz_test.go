package signature

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// fuzzVerifier trusts the recorded cosign key as "release" and the recorded
// keyless trusted root as "cosign", so fuzzed inputs reach key and keyless
// verification both.
func fuzzVerifier(f *testing.F) *Verifier {
	f.Helper()
	v, err := New(Options{
		Keys:         map[string]string{"release": filepath.Join("testdata", "cosign", "cosign.pub")},
		TrustedRoots: map[string]string{"cosign": filepath.Join("testdata", "keyless", "cosign-keyless-trusted_root.json")},
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	return v
}

func fuzzDigest(f *testing.F, d string) name.Digest {
	f.Helper()
	r, err := name.NewDigest("registry.test/demo/app@" + d)
	if err != nil {
		f.Fatal(err)
	}
	return r
}

// checkResult holds what every verification of one entry promises: either
// exactly one error, prefixed with where the entry came from, and nothing
// verified; or no error and exactly one signature or attestation, of
// format, over d, by a configured signer.
func checkResult(t *testing.T, res Result, where, format string, d name.Digest) (verified bool) {
	t.Helper()
	n := len(res.Signatures) + len(res.Attestations)
	switch {
	case len(res.Errors) == 1 && n == 0:
		if !strings.HasPrefix(res.Errors[0], where+": ") || len(res.Errors[0]) == len(where)+2 {
			t.Fatalf("error %q: want %q and a reason", res.Errors[0], where+": ")
		}
		return false
	case len(res.Errors) == 0 && n == 1:
	default:
		t.Fatalf("result with %d errors and %d entries, want exactly one of either: %+v", len(res.Errors), n, res)
	}
	check := func(f, digest string, s struct{ kind, key, issuer string }) {
		if f != format || digest != d.DigestStr() {
			t.Fatalf("verified %s entry over %s, want %s over %s", f, digest, format, d.DigestStr())
		}
		if !(s.kind == "key" && s.key == "release") && !(s.kind == "keyless" && s.issuer != "") {
			t.Fatalf("verified with signer %+v, not a configured one", s)
		}
	}
	for _, s := range res.Signatures {
		check(s.Format, s.Digest, struct{ kind, key, issuer string }{s.Signer.Kind, s.Signer.Key, s.Signer.Issuer})
	}
	for _, a := range res.Attestations {
		check(a.Format, a.Digest, struct{ kind, key, issuer string }{a.Signer.Kind, a.Signer.Key, a.Signer.Issuer})
		if a.PredicateType == "" {
			t.Fatal("verified attestation without a predicate type")
		}
	}
	return true
}

// FuzzVerifyBundle: a Sigstore bundle as read from a referrer's layer. Any
// blob yields one error or one verified entry (checkResult), and nothing
// verifies for a digest its statement does not name: the same blob checked
// against another digest never verifies. Seeds: testdata/fuzz/FuzzVerifyBundle
// (bundles recorded from cosign v3, key and keyless, and a DSSE bundle).
func FuzzVerifyBundle(f *testing.F) {
	v := fuzzVerifier(f)
	d := fuzzDigest(f, recordedBundleDigest)
	other := fuzzDigest(f, otherDigest)
	f.Fuzz(func(t *testing.T, blob []byte) {
		checkResult(t, v.verifyBundle("b", blob, d), "b", "bundle", d)
		if checkResult(t, v.verifyBundle("b", blob, other), "b", "bundle", other) {
			t.Fatalf("a bundle verified for %s, which it was not made for", otherDigest)
		}
	})
}

// FuzzVerifyLegacySig: a cosign .sig entry, the simple-signing payload
// (the layer blob) and the layer's annotations (signature, certificate,
// Rekor bundle) as JSON. Any input yields one error or one verified
// signature, and a verified payload names the image digest.
func FuzzVerifyLegacySig(f *testing.F) {
	v := fuzzVerifier(f)
	d := fuzzDigest(f, recordedLegacyDigest)
	f.Fuzz(func(t *testing.T, payload, annotations []byte) {
		var ann map[string]string
		if json.Unmarshal(annotations, &ann) != nil {
			return // the registry client only hands over string maps
		}
		if !checkResult(t, v.verifyLegacySig("l", payload, ann, d), "l", "legacy", d) {
			return
		}
		var ss simpleSigning
		if err := json.Unmarshal(payload, &ss); err != nil || ss.Critical.Image.DockerManifestDigest != d.DigestStr() {
			t.Fatalf("verified a payload that does not name %s: %s", d.DigestStr(), payload)
		}
	})
}

// FuzzVerifyLegacyAtt: a cosign .att entry, the DSSE envelope (the layer
// blob) and the layer's annotations as JSON. Any input yields one error or
// one verified attestation, and a verified statement's subject is the image.
func FuzzVerifyLegacyAtt(f *testing.F) {
	v := fuzzVerifier(f)
	d := fuzzDigest(f, recordedLegacyDigest)
	other := fuzzDigest(f, otherDigest)
	f.Fuzz(func(t *testing.T, envelope, annotations []byte) {
		var ann map[string]string
		if json.Unmarshal(annotations, &ann) != nil {
			return
		}
		checkResult(t, v.verifyLegacyAtt("a", envelope, ann, d), "a", "legacy", d)
		if checkResult(t, v.verifyLegacyAtt("a", envelope, ann, other), "a", "legacy", other) {
			t.Fatalf("an attestation verified for %s, which it was not made for", otherDigest)
		}
	})
}
