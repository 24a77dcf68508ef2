package signature_test

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
)

// TestLegacyKeylessSig verifies what cosign v2 writes for a keyless signature
// in the legacy layout (sha256-<hex>.sig: simple-signing payload, Fulcio leaf
// and chain, Rekor SET bundle annotations), made by the offline test Sigstore,
// through Check against an in-process registry.
func TestLegacyKeylessSig(t *testing.T) {
	reg := registrytest.New(t)
	d := reg.PushImage(t, "acme/app", "v1", registrytest.Image{Created: time.Now()})
	image := reg.Host + "/acme/app@" + d.String()
	dockerRef := reg.Host + "/acme/app"

	ss := signaturetest.NewSigstore(t)
	other := signaturetest.NewSigstore(t)
	goodRoot := ss.WriteTrustedRoot(t, t.TempDir())
	otherRoot := other.WriteTrustedRoot(t, t.TempDir())

	replayed := "sha256:" + strings.Repeat("cd", 32)
	layers := []signaturetest.LegacySignature{
		// 0: as cosign v2 writes it.
		ss.SignLegacy(t, release, signaturetest.SimpleSigningPayload(dockerRef, d.String()), signaturetest.LegacyOptions{}),
		// 1: without the chain annotation: the trusted root holds the intermediate.
		ss.SignLegacy(t, release, signaturetest.SimpleSigningPayload(dockerRef, d.String()), signaturetest.LegacyOptions{NoChain: true}),
		// 2: a valid signature over another image's payload.
		ss.SignLegacy(t, release, signaturetest.SimpleSigningPayload(dockerRef, replayed), signaturetest.LegacyOptions{}),
		// 3: no Rekor bundle annotation (signed with --tlog-upload=false).
		ss.SignLegacy(t, release, signaturetest.SimpleSigningPayload(dockerRef, d.String()), signaturetest.LegacyOptions{BundleOptions: signaturetest.BundleOptions{NoTlog: true}}),
	}
	// 4: layer 0 with layer 1's Rekor bundle: a logged entry, for another signature.
	swapped := signaturetest.LegacySignature{Payload: layers[0].Payload, Annotations: maps.Clone(layers[0].Annotations)}
	swapped.Annotations[signaturetest.LegacyBundleAnnotation] = layers[1].Annotations[signaturetest.LegacyBundleAnnotation]
	// 5: layer 0 with its integrated time moved: the SET no longer verifies.
	moved := signaturetest.LegacySignature{Payload: layers[0].Payload, Annotations: maps.Clone(layers[0].Annotations)}
	var rb map[string]any
	if err := json.Unmarshal([]byte(moved.Annotations[signaturetest.LegacyBundleAnnotation]), &rb); err != nil {
		t.Fatal(err)
	}
	p := rb["Payload"].(map[string]any)
	p["integratedTime"] = p["integratedTime"].(float64) - 60
	b, _ := json.Marshal(rb)
	moved.Annotations[signaturetest.LegacyBundleAnnotation] = string(b)
	layers = append(layers, swapped, moved)
	signaturetest.PushLegacySignatures(t, reg.Host, "acme/app", d.String(), layers...)

	for _, tc := range []struct {
		desc       string
		roots      map[string]string
		thresholds signature.Thresholds
		wantSigs   int
		wantErrors []string
	}{
		{
			desc: "trusted root", roots: map[string]string{"test": goodRoot}, wantSigs: 2,
			wantErrors: []string{
				"legacy .sig layer 2: signed payload is for " + replayed + ", image is " + d.String(),
				"legacy .sig layer 3: the signature (no dev.sigstore.cosign/bundle annotation) has no transparency-log entry, but trust.thresholds.transparencyLog is 1",
				`legacy .sig layer 4: not verified by trusted root "test": failed to verify log inclusion: transparency log signature does not match`,
				`legacy .sig layer 5: not verified by trusted root "test": failed to verify log inclusion: not enough verified log entries from transparency log: 0 < 1`,
			},
		},
		{
			desc: "another root", roots: map[string]string{"other": otherRoot},
			wantErrors: []string{
				`legacy .sig layer 0: not verified by trusted root "other"`,
				`legacy .sig layer 1: not verified by trusted root "other"`,
				"legacy .sig layer 2: signed payload is for " + replayed,
				`legacy .sig layer 3: the signature (no dev.sigstore.cosign/bundle annotation) has no transparency-log entry`,
				`legacy .sig layer 4: not verified by trusted root "other"`,
				`legacy .sig layer 5: not verified by trusted root "other"`,
			},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			v, err := signature.New(signature.Options{TrustedRoots: tc.roots, Thresholds: tc.thresholds}, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Check(t.Context(), client(t, reg.Host), image, mustDigest(t, image))
			if err != nil {
				t.Fatalf("Check() error = %v", err)
			}
			t.Logf("verificationErrors: %q", res.Errors)
			if len(res.Signatures) != tc.wantSigs || len(res.Attestations) != 0 {
				t.Fatalf("got %d signatures, %d attestations (errors %q), want %d, 0", len(res.Signatures), len(res.Attestations), res.Errors, tc.wantSigs)
			}
			for _, s := range res.Signatures {
				if s.Format != "legacy" || s.Digest != d.String() || s.Signer.Kind != "keyless" ||
					s.Signer.Issuer != release.Issuer || s.Signer.Subject != release.Subject ||
					s.Signer.Extensions["githubWorkflowRepository"] != "acme/app" ||
					s.Signer.Extensions["githubWorkflowRef"] != "refs/tags/v1.4.0" ||
					s.Signer.Extensions["sourceRepositoryURI"] != "https://github.com/acme/app" {
					t.Errorf("signature = %+v", s)
				}
				ts, err := time.Parse(time.RFC3339, s.Timestamp)
				if err != nil || time.Since(ts) > time.Hour || time.Until(ts) > time.Minute {
					t.Errorf("signature timestamp = %q, want the Rekor integrated time (about now)", s.Timestamp)
				}
			}
			assertErrors(t, res.Errors, tc.wantErrors)
		})
	}
}
