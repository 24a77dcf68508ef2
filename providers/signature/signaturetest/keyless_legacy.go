package signaturetest

// Legacy keyless signatures: what cosign v2 (`cosign sign` without
// --new-bundle-format, keyless) stores in the sha256-<hex>.sig tag. One layer
// per signature, media type application/vnd.dev.cosign.simplesigning.v1+json,
// whose blob is the simple-signing payload and whose annotations are
//
//	dev.cosignproject.cosign/signature  base64 ECDSA (ASN.1) signature over the payload
//	dev.sigstore.cosign/certificate     the Fulcio leaf, PEM
//	dev.sigstore.cosign/chain           the Fulcio intermediate and root, PEM
//	dev.sigstore.cosign/bundle          the Rekor SET bundle: {"SignedEntryTimestamp": b64,
//	                                    "Payload": {"body": b64, "integratedTime": n,
//	                                    "logIndex": n, "logID": "<hex>"}}
//
// The Rekor entry is a hashedrekord v0.0.1 over the payload's SHA-256 with
// the leaf as the verifier, as Rekor v1 stores what cosign uploads.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/rekor/pkg/types/hashedrekord"
)

// Annotations and media type of a legacy cosign .sig layer.
const (
	LegacySignatureAnnotation   = "dev.cosignproject.cosign/signature"
	LegacyCertificateAnnotation = "dev.sigstore.cosign/certificate"
	LegacyChainAnnotation       = "dev.sigstore.cosign/chain"
	LegacyBundleAnnotation      = "dev.sigstore.cosign/bundle"
	SimpleSigningMediaType      = "application/vnd.dev.cosign.simplesigning.v1+json"
)

// LegacyOptions adjusts SignLegacy. The embedded BundleOptions apply as for
// SignImage: NoSCT, the leaf's NotBefore/NotAfter, SignedAt (the Rekor
// integrated time) and NoTlog (no dev.sigstore.cosign/bundle annotation);
// NoTimestamp has no meaning here (cosign v2 legacy signatures carry none).
type LegacyOptions struct {
	BundleOptions
	// NoChain leaves out the dev.sigstore.cosign/chain annotation.
	NoChain bool
}

// LegacySignature is one layer of a legacy .sig tag: the simple-signing
// payload (the layer's blob) and the layer's annotations.
type LegacySignature struct {
	Payload     []byte
	Annotations map[string]string
}

// SimpleSigningPayload is cosign's payload for image dockerReference
// ("host/repo") at imageDigest ("sha256:<hex>"), byte for byte as cosign
// v2 writes it.
func SimpleSigningPayload(dockerReference, imageDigest string) []byte {
	b, _ := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": dockerReference},
			"image":    map[string]string{"docker-manifest-digest": imageDigest},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
	return b
}

// SignLegacy signs payload (usually SimpleSigningPayload) as cosign v2 does
// keyless: a fresh ECDSA P-256 key, a Fulcio-style leaf for id (with an
// embedded SCT unless o.NoSCT), the signature over the payload, and, unless
// o.NoTlog, a hashedrekord Rekor entry with its signed entry timestamp.
func (s *Sigstore) SignLegacy(t testing.TB, id Identity, payload []byte, o LegacyOptions) LegacySignature {
	t.Helper()
	sig, err := s.signLegacy(id, payload, o)
	if err != nil {
		t.Fatalf("signaturetest: SignLegacy: %v", err)
	}
	return sig
}

func (s *Sigstore) signLegacy(id Identity, payload []byte, o LegacyOptions) (LegacySignature, error) {
	exts, err := keylessExtensions(id)
	if err != nil {
		return LegacySignature{}, err
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Minute)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(10 * time.Minute)
	}
	if o.SignedAt.IsZero() {
		o.SignedAt = now
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return LegacySignature{}, err
	}
	leafDER, err := s.issueLeaf(key.Public(), id, exts, o.BundleOptions)
	if err != nil {
		return LegacySignature{}, err
	}
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		return LegacySignature{}, err
	}
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	ann := map[string]string{
		LegacySignatureAnnotation:   base64.StdEncoding.EncodeToString(sig),
		LegacyCertificateAnnotation: string(leafPEM),
	}
	if !o.NoChain {
		ann[LegacyChainAnnotation] = string(s.ChainPEM())
	}
	if !o.NoTlog {
		e, err := s.logRekorEntry(hashedrekord.KIND, payload, leafPEM, sig, o.SignedAt, false)
		if err != nil {
			return LegacySignature{}, err
		}
		if ann[LegacyBundleAnnotation], err = e.legacyBundleAnnotation(); err != nil {
			return LegacySignature{}, err
		}
	}
	return LegacySignature{Payload: payload, Annotations: ann}, nil
}

// ChainPEM is the Fulcio chain above a leaf, intermediate first, as cosign
// writes it in dev.sigstore.cosign/chain.
func (s *Sigstore) ChainPEM() []byte {
	var b []byte
	for _, c := range [][]byte{s.fulcioIntermediate.Raw, s.fulcioRoot.Raw} {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return b
}

// PushLegacySignatures writes sigs as the sha256-<hex>.sig tag of imageDigest
// in registryHost/repo (plain HTTP), as cosign v2 does: an OCI image
// manifest whose config is an OCI image config and whose layers are the
// payloads (media type application/vnd.dev.cosign.simplesigning.v1+json)
// with their annotations. It replaces any existing tag and returns the
// manifest's digest.
func PushLegacySignatures(t testing.TB, registryHost, repo, imageDigest string, sigs ...LegacySignature) v1.Hash {
	t.Helper()
	r, err := name.NewRepository(registryHost+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatalf("signaturetest: PushLegacySignatures: %v", err)
	}
	alg, h, ok := strings.Cut(imageDigest, ":")
	if !ok {
		t.Fatalf("signaturetest: PushLegacySignatures: image digest %q: want sha256:<hex>", imageDigest)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, s := range sigs {
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:       static.NewLayer(s.Payload, SimpleSigningMediaType),
			Annotations: s.Annotations,
		})
		if err != nil {
			t.Fatalf("signaturetest: PushLegacySignatures: %v", err)
		}
	}
	tag := r.Tag(fmt.Sprintf("%s-%s.sig", alg, h))
	if err := remote.Write(tag, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("signaturetest: PushLegacySignatures: push %s: %v", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
