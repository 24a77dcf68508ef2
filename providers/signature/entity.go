package signature

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// legacyEntity adapts one entry of a legacy cosign .sig or .att tag to
// sigstore-go's SignedEntity, so both layouts go through the same verifier.
type legacyEntity struct {
	verify.BaseSignedEntity
	cert     *x509.Certificate // keyless; nil for key-signed
	sig      verify.SignatureContent
	entries  []*tlog.Entry
	promised bool
}

var _ verify.SignedEntity = (*legacyEntity)(nil)

func (e *legacyEntity) VerificationContent() (verify.VerificationContent, error) {
	if e.cert != nil {
		return bundle.NewCertificate(e.cert), nil
	}
	return &bundle.PublicKey{}, nil
}

func (e *legacyEntity) SignatureContent() (verify.SignatureContent, error) { return e.sig, nil }
func (e *legacyEntity) TlogEntries() ([]*tlog.Entry, error)                { return e.entries, nil }
func (e *legacyEntity) Timestamps() ([][]byte, error)                      { return nil, nil }
func (e *legacyEntity) HasInclusionPromise() bool                          { return e.promised }
func (e *legacyEntity) HasInclusionProof() bool                            { return false }

// Version reports v0.1, the bundle version whose rules legacy entries follow
// (an inclusion promise suffices; no inclusion proof).
func (e *legacyEntity) Version() (string, error) { return "v0.1", nil }

// Annotations cosign writes on legacy layers.
const (
	annSignature   = "dev.cosignproject.cosign/signature"
	annCertificate = "dev.sigstore.cosign/certificate"
	annChain       = "dev.sigstore.cosign/chain"
	annBundle      = "dev.sigstore.cosign/bundle"
)

// newLegacySig builds the entity for a simple-signing payload and its layer
// annotations.
func newLegacySig(payload []byte, ann map[string]string) (*legacyEntity, error) {
	sig, err := base64.StdEncoding.DecodeString(ann[annSignature])
	if err != nil || len(sig) == 0 {
		return nil, errors.New("no valid signature annotation")
	}
	sum := sha256.Sum256(payload)
	e := &legacyEntity{sig: bundle.NewMessageSignature(sum[:], "SHA2_256", sig)}
	if err := e.keyless(ann); err != nil {
		return nil, err
	}
	return e, nil
}

// newLegacyEnvelope builds the entity for a DSSE envelope layer of a .att tag.
func newLegacyEnvelope(raw []byte, ann map[string]string) (*legacyEntity, *dsse.Envelope, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, nil, fmt.Errorf("not a DSSE envelope: %w", err)
	}
	if len(env.Signatures) == 0 {
		return nil, nil, errors.New("DSSE envelope has no signatures")
	}
	e := &legacyEntity{sig: &bundle.Envelope{Envelope: &env}}
	if err := e.keyless(ann); err != nil {
		return nil, nil, err
	}
	return e, &env, nil
}

// keyless reads the certificate and Rekor bundle annotations, if any. The
// Rekor bundle is read for key-signed entries too: cosign writes it whenever
// it uploaded to Rekor, and a key that requires a log entry needs it.
//
// The chain annotation (the Fulcio intermediate and root) is not used: as
// sigstore-go does for bundles unless told otherwise, only the trusted
// root's own intermediates may complete the chain, so that each CA's
// validity period in the trusted root is enforced.
func (e *legacyEntity) keyless(ann map[string]string) error {
	if certPEM := ann[annCertificate]; certPEM != "" {
		certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(certPEM))
		if err != nil || len(certs) == 0 {
			return fmt.Errorf("certificate annotation is not a PEM certificate: %v", err)
		}
		e.cert = certs[0]
	}
	if raw := ann[annBundle]; raw != "" {
		entry, err := parseRekorBundle(raw)
		if err != nil {
			return fmt.Errorf("rekor bundle annotation: %w", err)
		}
		e.entries = []*tlog.Entry{entry}
		e.promised = true
	}
	return nil
}

// rekorBundle is cosign's legacy dev.sigstore.cosign/bundle annotation.
type rekorBundle struct {
	SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
	Payload              struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	} `json:"Payload"`
}

func parseRekorBundle(raw string) (*tlog.Entry, error) {
	var rb rekorBundle
	if err := json.Unmarshal([]byte(raw), &rb); err != nil {
		return nil, err
	}
	body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	logID, err := hex.DecodeString(rb.Payload.LogID)
	if err != nil {
		return nil, fmt.Errorf("logID: %w", err)
	}
	return tlog.NewEntry(body, rb.Payload.IntegratedTime, rb.Payload.LogIndex, logID, rb.SignedEntryTimestamp, nil)
}
