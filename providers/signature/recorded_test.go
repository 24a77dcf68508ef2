package signature

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

const (
	recordedBundleDigest = "sha256:c5237c98e2db67c53e3e90c6bdc772c8f305e8690db2254cc9f796e23c83b8c2"
	recordedLegacyDigest = "sha256:c62747e5b427dfdf14a28282f4154b7c1f59656cd4c92368061691b667fc8929"
	otherDigest          = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
)

func recorded(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cosign", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digestRef(t *testing.T, d string) name.Digest {
	t.Helper()
	r, err := name.NewDigest("registry.test/demo/app@" + d)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wrongKey writes a fresh ECDSA public key that signed nothing here.
func wrongKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "other.pub")
	if err := os.WriteFile(p, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newVerifier(t *testing.T, keys map[string]string) *Verifier {
	t.Helper()
	v, err := New(Options{Keys: keys}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRecordedCosignOutput verifies what real cosign wrote, and the three
// ways it must fail: wrong key, tampered payload, replay onto another digest.
func TestRecordedCosignOutput(t *testing.T) {
	release := filepath.Join("testdata", "cosign", "cosign.pub")
	other := wrongKey(t)

	var sigMan, attMan v1.Manifest
	if err := json.Unmarshal(recorded(t, "legacy-sig-manifest.json"), &sigMan); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(recorded(t, "legacy-att-manifest.json"), &attMan); err != nil {
		t.Fatal(err)
	}
	payload := recorded(t, "legacy-sig-simplesigning-payload.json")
	tampered := []byte(strings.Replace(string(payload), "demo/app", "demo/evil", 1))
	envelope := recorded(t, "legacy-att-dsse-envelope.json")
	tamperedEnv := tamperEnvelope(t, envelope)
	signBundle := recorded(t, "key-bundle-sign-v1.json")
	provBundle := recorded(t, "key-bundle-provenance-v0.2.json")

	type check func(v *Verifier) Result
	cases := []struct {
		desc      string
		keys      map[string]string
		run       check
		wantSigs  int
		wantAtts  int
		wantError string
	}{
		{desc: "bundle signature", keys: map[string]string{"release": release},
			run: func(v *Verifier) Result { return v.verifyBundle("b", signBundle, digestRef(t, recordedBundleDigest)) }, wantSigs: 1},
		{desc: "bundle attestation", keys: map[string]string{"release": release},
			run: func(v *Verifier) Result { return v.verifyBundle("b", provBundle, digestRef(t, recordedBundleDigest)) }, wantAtts: 1},
		{desc: "bundle with another key", keys: map[string]string{"ci": other},
			run:       func(v *Verifier) Result { return v.verifyBundle("b", signBundle, digestRef(t, recordedBundleDigest)) },
			wantError: `signed by a key not in config (tried ci)`},
		{desc: "bundle replayed onto another digest", keys: map[string]string{"release": release},
			run:       func(v *Verifier) Result { return v.verifyBundle("b", signBundle, digestRef(t, otherDigest)) },
			wantError: "bundle subject is " + recordedBundleDigest + ", image is " + otherDigest},
		{desc: "legacy sig", keys: map[string]string{"ci": other, "release": release},
			run: func(v *Verifier) Result {
				return v.verifyLegacySig("l", payload, sigMan.Layers[0].Annotations, digestRef(t, recordedLegacyDigest))
			}, wantSigs: 1},
		{desc: "legacy sig with another key", keys: map[string]string{"ci": other},
			run: func(v *Verifier) Result {
				return v.verifyLegacySig("l", payload, sigMan.Layers[0].Annotations, digestRef(t, recordedLegacyDigest))
			}, wantError: "signed by a key not in config"},
		{desc: "legacy sig tampered payload", keys: map[string]string{"release": release},
			run: func(v *Verifier) Result {
				return v.verifyLegacySig("l", tampered, sigMan.Layers[0].Annotations, digestRef(t, recordedLegacyDigest))
			}, wantError: "signed by a key not in config"},
		{desc: "legacy sig replayed onto another digest", keys: map[string]string{"release": release},
			run: func(v *Verifier) Result {
				return v.verifyLegacySig("l", payload, sigMan.Layers[0].Annotations, digestRef(t, otherDigest))
			}, wantError: "signed payload is for " + recordedLegacyDigest + ", image is " + otherDigest},
		{desc: "legacy att", keys: map[string]string{"release": release},
			run: func(v *Verifier) Result {
				return v.verifyLegacyAtt("a", envelope, attMan.Layers[0].Annotations, digestRef(t, recordedLegacyDigest))
			}, wantAtts: 1},
		{desc: "legacy att tampered", keys: map[string]string{"release": release},
			run: func(v *Verifier) Result {
				return v.verifyLegacyAtt("a", tamperedEnv, attMan.Layers[0].Annotations, digestRef(t, recordedLegacyDigest))
			}, wantError: "signed by a key not in config"},
		{desc: "legacy att replayed onto another digest", keys: map[string]string{"release": release},
			run: func(v *Verifier) Result {
				return v.verifyLegacyAtt("a", envelope, attMan.Layers[0].Annotations, digestRef(t, otherDigest))
			}, wantError: "attestation subject is " + recordedLegacyDigest + ", image is " + otherDigest},
		{desc: "keyless bundle without trusted roots", keys: map[string]string{"release": release},
			run: func(v *Verifier) Result {
				return v.verifyBundle("b", recordedKeyless(t, "cosign-keyless-sign.bundle.json"), digestRef(t, "sha256:27e18dec63da9f79c177955b152ef765be8ea46df345d7917fed8c482b90db7c"))
			}, wantError: "keyless signature, but no trust.trustedRoots or trust.tuf are configured"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			r := tc.run(newVerifier(t, tc.keys))
			if len(r.Signatures) != tc.wantSigs || len(r.Attestations) != tc.wantAtts {
				t.Fatalf("got %d signatures, %d attestations, errors %q; want %d, %d", len(r.Signatures), len(r.Attestations), r.Errors, tc.wantSigs, tc.wantAtts)
			}
			if tc.wantError == "" {
				if len(r.Errors) != 0 {
					t.Errorf("errors = %q, want none", r.Errors)
				}
				for _, s := range r.Signatures {
					if s.Signer.Kind != "key" || s.Signer.Key != "release" {
						t.Errorf("signer = %+v, want key release", s.Signer)
					}
				}
				for _, a := range r.Attestations {
					if a.Signer.Key != "release" || !strings.HasPrefix(a.PredicateType, "https://slsa.dev/provenance/") || len(a.Predicate) == 0 {
						t.Errorf("attestation = %+v", a)
					}
				}
				return
			}
			if len(r.Errors) != 1 || !strings.Contains(r.Errors[0], tc.wantError) {
				t.Errorf("errors = %q, want one mentioning %q", r.Errors, tc.wantError)
			}
		})
	}
}

func recordedKeyless(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keyless", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamperEnvelope changes the statement's predicate but keeps the signature.
func tamperEnvelope(t *testing.T, raw []byte) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	p, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
	p = []byte(strings.Replace(string(p), "release.yml", "evil.yml", 1))
	env["payload"] = base64.StdEncoding.EncodeToString(p)
	out, _ := json.Marshal(env)
	return out
}

// TestRecordedKeylessBundle verifies a keyless bundle recorded from a real
// cosign run against its own trusted root, offline.
func TestRecordedKeylessBundle(t *testing.T) {
	v, err := New(Options{TrustedRoots: map[string]string{"recorded": filepath.Join("testdata", "keyless", "cosign-keyless-trusted_root.json")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("testdata", "keyless", "cosign-keyless-sign.bundle.json"))
	if err != nil {
		t.Fatal(err)
	}
	d := "sha256:27e18dec63da9f79c177955b152ef765be8ea46df345d7917fed8c482b90db7c"
	r := v.verifyBundle("b", b, digestRef(t, d))
	if len(r.Signatures) != 1 || len(r.Errors) != 0 {
		t.Fatalf("signatures %+v errors %q, want one verified signature", r.Signatures, r.Errors)
	}
	s := r.Signatures[0].Signer
	if s.Kind != "keyless" || s.Issuer != "https://token.actions.githubusercontent.com" ||
		s.Subject != "https://github.com/acme/demo/.github/workflows/release.yml@refs/heads/main" ||
		s.Extensions["sourceRepositoryURI"] != "https://github.com/acme/demo" {
		t.Errorf("signer = %+v", s)
	}
	if r := v.verifyBundle("b", b, digestRef(t, otherDigest)); len(r.Signatures) != 0 || len(r.Errors) != 1 {
		t.Errorf("replayed onto another digest: %+v, want one error", r)
	}
}
