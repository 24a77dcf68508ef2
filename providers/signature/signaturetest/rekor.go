package signaturetest

// Rekor v1 entries for what VirtualSigstore cannot log by itself: a
// hashedrekord over a simple-signing payload (legacy cosign .sig) and a dsse
// entry whose verifier is a plain public key (cosign sign --key with tlog
// upload). The body is built exactly as sigstore-go's pkg/testing/ca
// createEntry/generateRekorEntry build theirs (rekor's own types, then
// canonicalised as the Rekor server stores it); the signed entry timestamp
// and the inclusion proof come from VirtualSigstore (RekorSignPayload,
// GetInclusionProof), as in its GenerateTlogEntry.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/pki"
	"github.com/sigstore/rekor/pkg/types"
	rekordsse "github.com/sigstore/rekor/pkg/types/dsse"
	_ "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1" // registers dsse 0.0.1
	"github.com/sigstore/rekor/pkg/types/hashedrekord"
	_ "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1" // registers hashedrekord 0.0.1
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/proto"
)

// rekorEntry is one Rekor v1 log entry as a client receives it.
type rekorEntry struct {
	body           []byte // canonicalised entry body (JSON)
	integratedTime int64
	logIndex       int64
	logID          []byte // raw SHA-256 of the log's DER public key
	set            []byte // signed entry timestamp (inclusion promise)
	proof          *models.InclusionProof
}

// logRekorEntry logs kind ("hashedrekord" or "dsse", API version 0.0.1) at
// time at. For hashedrekord, artifact is the signed message (its SHA-256 is
// logged); for dsse it is the envelope JSON. verifierPEM is the signer's
// certificate or public key as PEM; sig the raw signature. withProof adds an
// inclusion proof with a signed checkpoint (as Rekor's v0.3 bundles carry);
// legacy cosign annotations carry the promise only.
func (s *Sigstore) logRekorEntry(kind string, artifact, verifierPEM, sig []byte, at time.Time, withProof bool) (*rekorEntry, error) {
	ctx := context.Background()
	props := types.ArtifactProperties{
		PublicKeyBytes: [][]byte{verifierPEM},
		PKIFormat:      string(pki.X509),
		SignatureBytes: sig,
	}
	switch kind {
	case hashedrekord.KIND:
		sum := sha256.Sum256(artifact)
		props.ArtifactHash = hex.EncodeToString(sum[:])
	case rekordsse.KIND:
		props.ArtifactBytes = artifact
	default:
		return nil, fmt.Errorf("rekor: unsupported entry kind %q", kind)
	}
	proposed, err := types.NewProposedEntry(ctx, kind, "0.0.1", props)
	if err != nil {
		return nil, fmt.Errorf("rekor: propose %s: %w", kind, err)
	}
	impl, err := types.CreateVersionedEntry(proposed)
	if err != nil {
		return nil, fmt.Errorf("rekor: %s entry: %w", kind, err)
	}
	body, err := types.CanonicalizeEntry(ctx, impl)
	if err != nil {
		return nil, fmt.Errorf("rekor: canonicalise %s: %w", kind, err)
	}
	rekorPub, err := s.rekorPublicKey()
	if err != nil {
		return nil, err
	}
	logID, err := keylessLogID(rekorPub)
	if err != nil {
		return nil, err
	}
	e := &rekorEntry{body: body, integratedTime: at.Unix(), logIndex: 0, logID: logID}
	e.set, err = s.rekor.RekorSignPayload(tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(body),
		IntegratedTime: e.integratedTime,
		LogIndex:       e.logIndex,
		LogID:          hex.EncodeToString(logID),
	})
	if err != nil {
		return nil, fmt.Errorf("rekor: sign entry timestamp: %w", err)
	}
	if withProof {
		if e.proof, err = s.rekor.GetInclusionProof(body); err != nil {
			return nil, fmt.Errorf("rekor: inclusion proof: %w", err)
		}
	}
	// What sigstore-go will parse: fail here rather than in the code under test.
	entry, err := e.tlogEntry()
	if err != nil {
		return nil, err
	}
	if err := tlog.ValidateEntry(entry); err != nil {
		return nil, fmt.Errorf("rekor: %s entry does not validate: %w", kind, err)
	}
	return e, nil
}

func (e *rekorEntry) tlogEntry() (*tlog.Entry, error) {
	entry, err := tlog.NewEntry(e.body, e.integratedTime, e.logIndex, e.logID, e.set, e.proof) //nolint:staticcheck // the constructor VirtualSigstore uses
	if err != nil {
		return nil, fmt.Errorf("rekor: entry does not parse: %w", err)
	}
	return entry, nil
}

// transparencyLogEntry is the entry as a v0.3 bundle carries it: kind and
// version, and the inclusion promise, which tlog.Entry keeps outside its
// protobuf.
func (e *rekorEntry) transparencyLogEntry() (*protorekor.TransparencyLogEntry, error) {
	entry, err := e.tlogEntry()
	if err != nil {
		return nil, err
	}
	tle, ok := proto.Clone(entry.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	if !ok {
		return nil, fmt.Errorf("rekor: unexpected entry type")
	}
	var kind struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(e.body, &kind); err != nil {
		return nil, fmt.Errorf("rekor: entry body: %w", err)
	}
	tle.KindVersion = &protorekor.KindVersion{Kind: kind.Kind, Version: kind.APIVersion}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: e.set}
	return tle, nil
}

// legacyBundleAnnotation is cosign's dev.sigstore.cosign/bundle annotation
// (cosign's bundle.RekorBundle): the SET and the payload it signs, with the
// body base64 and the log ID hex.
func (e *rekorEntry) legacyBundleAnnotation() (string, error) {
	b, err := json.Marshal(map[string]any{
		"SignedEntryTimestamp": e.set, // []byte: base64, as cosign's strfmt.Base64
		"Payload": map[string]any{
			"body":           base64.StdEncoding.EncodeToString(e.body),
			"integratedTime": e.integratedTime,
			"logIndex":       e.logIndex,
			"logID":          hex.EncodeToString(e.logID),
		},
	})
	return string(b), err
}
