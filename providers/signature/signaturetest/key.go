package signaturetest

// Key-signed bundles and legacy signatures logged in the test Sigstore's
// Rekor: what `cosign sign --key` writes when it uploads to the transparency
// log (cosign's default; the recorded testdata was made with
// --tlog-upload=false and has no entry).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	rekordsse "github.com/sigstore/rekor/pkg/types/dsse"
	"github.com/sigstore/rekor/pkg/types/hashedrekord"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"
)

// SigningKey is a long-lived signing key, as made by cosign
// generate-key-pair: ECDSA P-256 with SHA-256.
type SigningKey struct {
	kp *sign.EphemeralKeypair
}

// NewSigningKey makes a fresh key.
func NewSigningKey(t testing.TB) *SigningKey {
	t.Helper()
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatalf("signaturetest: NewSigningKey: %v", err)
	}
	return &SigningKey{kp: kp}
}

// PublicKeyPEM is the public key as PEM ("PUBLIC KEY"), as trust.keys reads it.
func (k *SigningKey) PublicKeyPEM(t testing.TB) []byte {
	t.Helper()
	s, err := k.kp.GetPublicKeyPem()
	if err != nil {
		t.Fatalf("signaturetest: %v", err)
	}
	return []byte(s)
}

// WritePublicKey writes PublicKeyPEM to dir/cosign.pub and returns the path.
func (k *SigningKey) WritePublicKey(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(p, k.PublicKeyPEM(t), 0o644); err != nil {
		t.Fatalf("signaturetest: %v", err)
	}
	return p
}

// SignImageWithKey is SignImage for a named key: the v0.3 bundle's
// verification material is the key's hint (no certificate), and unless
// o.NoTlog it carries a Rekor dsse entry (inclusion promise, inclusion proof
// and signed checkpoint) whose verifier is the public key; unless
// o.NoTimestamp, an RFC 3161 timestamp. NoSCT, NotBefore and NotAfter do
// not apply.
func (s *Sigstore) SignImageWithKey(t testing.TB, k *SigningKey, imageDigest, predicateType string, predicate []byte, o BundleOptions) []byte {
	t.Helper()
	statement, err := keylessStatement(imageDigest, predicateType, predicate)
	if err != nil {
		t.Fatalf("signaturetest: SignImageWithKey: %v", err)
	}
	if o.SignedAt.IsZero() {
		o.SignedAt = time.Now()
	}
	opts := sign.BundleOptions{Context: t.Context()}
	if !o.NoTimestamp {
		opts.TimestampAuthorities = []*sign.TimestampAuthority{sign.NewTimestampAuthority(&sign.TimestampAuthorityOptions{
			URL:       keylessTSAURI,
			Transport: &keylessTSA{s: s, at: o.SignedAt},
		})}
	}
	if !o.NoTlog {
		opts.TransparencyLogs = []sign.Transparency{&rekorDSSE{s: s, at: o.SignedAt}}
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: statement, PayloadType: keylessInTotoType}, k.kp, opts)
	if err != nil {
		t.Fatalf("signaturetest: SignImageWithKey: %v", err)
	}
	b, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatalf("signaturetest: SignImageWithKey: %v", err)
	}
	return b
}

// SignLegacyWithKey signs payload (usually SimpleSigningPayload) with k as
// cosign v2 `sign --key` does in the legacy layout: only the signature
// annotation and, unless o.NoTlog, the Rekor bundle annotation for a
// hashedrekord entry whose verifier is the public key. Only SignedAt and
// NoTlog of o apply.
func (s *Sigstore) SignLegacyWithKey(t testing.TB, k *SigningKey, payload []byte, o LegacyOptions) LegacySignature {
	t.Helper()
	if o.SignedAt.IsZero() {
		o.SignedAt = time.Now()
	}
	sig, _, err := k.kp.SignData(t.Context(), payload)
	if err != nil {
		t.Fatalf("signaturetest: SignLegacyWithKey: %v", err)
	}
	ann := map[string]string{LegacySignatureAnnotation: base64.StdEncoding.EncodeToString(sig)}
	if !o.NoTlog {
		e, err := s.logRekorEntry(hashedrekord.KIND, payload, k.PublicKeyPEM(t), sig, o.SignedAt, false)
		if err != nil {
			t.Fatalf("signaturetest: SignLegacyWithKey: %v", err)
		}
		if ann[LegacyBundleAnnotation], err = e.legacyBundleAnnotation(); err != nil {
			t.Fatalf("signaturetest: SignLegacyWithKey: %v", err)
		}
	}
	return LegacySignature{Payload: payload, Annotations: ann}
}

// rekorDSSE is a sign.Transparency that logs the bundle's DSSE envelope as a
// dsse v0.0.1 entry for any verifier, certificate or public key.
type rekorDSSE struct {
	s  *Sigstore
	at time.Time
}

var _ sign.Transparency = (*rekorDSSE)(nil)

func (r *rekorDSSE) GetTransparencyLogEntry(_ context.Context, verifierPEM []byte, b *protobundle.Bundle) error {
	pbEnv := b.GetDsseEnvelope()
	if pbEnv == nil || len(pbEnv.GetSignatures()) != 1 {
		return errors.New("rekor: want a DSSE envelope with one signature")
	}
	sig := pbEnv.GetSignatures()[0].GetSig()
	env, err := json.Marshal(&dsse.Envelope{
		PayloadType: pbEnv.GetPayloadType(),
		Payload:     base64.StdEncoding.EncodeToString(pbEnv.GetPayload()),
		Signatures:  []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	})
	if err != nil {
		return err
	}
	e, err := r.s.logRekorEntry(rekordsse.KIND, env, verifierPEM, sig, r.at, true)
	if err != nil {
		return err
	}
	tle, err := e.transparencyLogEntry()
	if err != nil {
		return fmt.Errorf("rekor: %w", err)
	}
	b.VerificationMaterial.TlogEntries = append(b.VerificationMaterial.TlogEntries, tle)
	return nil
}
