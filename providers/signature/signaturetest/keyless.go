package signaturetest

// Keyless (Fulcio certificate) signing without the network: a test Sigstore
// whose bundles sigstore-go verifies exactly as it verifies public-good ones.
//
// What is reused from sigstore-go v1.3.0 and what is not:
//
//   - sign.Bundle builds and signs every bundle (DSSE content, an ephemeral
//     ECDSA P-256 key), with our CertificateProvider, a sign.TimestampAuthority
//     whose HTTP transport is the in-process TSA, and our Transparency.
//   - The Rekor entry (dsse v0.0.1 body, inclusion proof, signed checkpoint,
//     signed entry timestamp) comes from pkg/testing/ca's VirtualSigstore:
//     GenerateTlogEntry and RekorSignPayload. Its tlog.Entry drops the kind
//     and the inclusion promise when turned into a protobuf, so both are put
//     back here.
//   - The trusted root is root.NewTrustedRoot + MarshalJSON; the Fulcio OIDs
//     are pkg/fulcio/certificate's.
//   - Not reused: VirtualSigstore's CA. Its intermediate and CT keys are
//     unexported (so no SCTs), its leaves carry only an email SAN and the
//     issuer, and its TSA stamps time.Now() with a leaf valid for ten minutes.
//     The certificate templates below are adapted from pkg/testing/ca/ca.go
//     (GenerateRootCa, GenerateFulcioIntermediate, GenerateTSAIntermediate,
//     GenerateTSALeafCert) with wider validity; the TSA response is its
//     generateTimestampingResponse with a chosen time; the SCT is built as
//     Fulcio and a CT log do (precertificate, RFC 6962 signature, SCT list
//     extension).

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // subject key identifier, as RFC 5280 4.2.1.2 method 1
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	ct "github.com/google/certificate-transparency-go"
	"github.com/google/certificate-transparency-go/ctutil"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/google/certificate-transparency-go/x509util"

	"github.com/digitorus/timestamp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	sigstoreca "github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const (
	keylessBundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	keylessEmptyMediaType  = "application/vnd.oci.empty.v1+json"
	keylessInTotoType      = "application/vnd.in-toto+json"

	// keylessTrustWindow is how far before and after NewSigstore the CAs, the
	// TSA and the logs are valid: SignedAt and leaf validity must fall inside.
	keylessTrustWindow = 30 * 24 * time.Hour

	// URIs written into the trusted root. Rekor's host must be the origin
	// VirtualSigstore signs its checkpoints for.
	keylessFulcioURI = "https://fulcio.sigstore.test"
	keylessCTLogURI  = "https://ctfe.sigstore.test"
	keylessRekorURI  = "https://rekor.localhost"
	keylessTSAURI    = "https://timestamp.sigstore.test/api/v1/timestamp"
)

// Sigstore is an offline stand-in for a Sigstore deployment such as public
// good: a Fulcio-style root and intermediate CA, a CT log key, a Rekor log
// key and an RFC 3161 timestamping authority. Its bundles are real v0.3
// bundles and verify with sigstore-go against TrustedRootJSON.
type Sigstore struct {
	created time.Time

	fulcioRoot         *x509.Certificate
	fulcioIntermediate *x509.Certificate
	fulcioKey          *ecdsa.PrivateKey // the intermediate's

	ctKey *ecdsa.PrivateKey

	tsaRoot         *x509.Certificate
	tsaIntermediate *x509.Certificate
	tsaLeaf         *x509.Certificate
	tsaKey          *ecdsa.PrivateKey // the leaf's

	rekor *sigstoreca.VirtualSigstore // only its Rekor key is used
}

// NewSigstore creates a Sigstore with fresh keys. Its CAs, TSA and logs are
// valid from 30 days before now to 30 days after, so SignedAt and the leaf's
// NotBefore must fall in that window. A Sigstore is safe for concurrent use.
func NewSigstore(t testing.TB) *Sigstore {
	t.Helper()
	s, err := newKeylessSigstore(time.Now())
	if err != nil {
		t.Fatalf("signaturetest: new Sigstore: %v", err)
	}
	return s
}

func newKeylessSigstore(now time.Time) (*Sigstore, error) {
	s := &Sigstore{created: now}
	notBefore, notAfter := now.Add(-keylessTrustWindow), now.Add(keylessTrustWindow)

	var err error
	var rootKey, tsaRootKey, tsaIntermediateKey *ecdsa.PrivateKey
	s.fulcioRoot, rootKey, err = keylessCA(pkix.Name{CommonName: "sigstore", Organization: []string{"sigstore.dev"}}, nil, nil, nil, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	s.fulcioIntermediate, s.fulcioKey, err = keylessCA(pkix.Name{CommonName: "sigstore-intermediate", Organization: []string{"sigstore.dev"}},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, s.fulcioRoot, rootKey, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	s.tsaRoot, tsaRootKey, err = keylessCA(pkix.Name{CommonName: "sigstore-tsa", Organization: []string{"sigstore.dev"}}, nil, nil, nil, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	s.tsaIntermediate, tsaIntermediateKey, err = keylessCA(pkix.Name{CommonName: "sigstore-tsa-intermediate", Organization: []string{"sigstore.dev"}},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}, s.tsaRoot, tsaRootKey, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	s.tsaLeaf, s.tsaKey, err = keylessTSALeaf(s.tsaIntermediate, tsaIntermediateKey, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	if s.ctKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if s.rekor, err = sigstoreca.NewVirtualSigstore(); err != nil {
		return nil, err
	}
	return s, nil
}

// keylessLogID is a transparency log's ID: the SHA-256 of its DER public key,
// as raw bytes (VirtualSigstore's log IDs are the hex of this).
func keylessLogID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return sum[:], nil
}

func (s *Sigstore) rekorPublicKey() (crypto.PublicKey, error) {
	for _, l := range s.rekor.RekorLogs() {
		return l.PublicKey, nil
	}
	return nil, errors.New("VirtualSigstore has no Rekor log")
}

// trustedRoot is the trusted material as sigstore-go's type.
func (s *Sigstore) trustedRoot() (*root.TrustedRoot, error) {
	start := s.created.Add(-keylessTrustWindow)
	rekorPub, err := s.rekorPublicKey()
	if err != nil {
		return nil, err
	}
	rekorID, err := keylessLogID(rekorPub)
	if err != nil {
		return nil, err
	}
	ctID, err := keylessLogID(s.ctKey.Public())
	if err != nil {
		return nil, err
	}
	fulcio := &root.FulcioCertificateAuthority{
		Root:                s.fulcioRoot,
		Intermediates:       []*x509.Certificate{s.fulcioIntermediate},
		ValidityPeriodStart: start,
		URI:                 keylessFulcioURI,
	}
	tsa := &root.SigstoreTimestampingAuthority{
		Root:                s.tsaRoot,
		Intermediates:       []*x509.Certificate{s.tsaIntermediate},
		Leaf:                s.tsaLeaf,
		ValidityPeriodStart: start,
		URI:                 keylessTSAURI,
	}
	ctlogs := map[string]*root.TransparencyLog{hex.EncodeToString(ctID): {
		BaseURL:             keylessCTLogURI,
		ID:                  ctID,
		ValidityPeriodStart: start,
		HashFunc:            crypto.SHA256,
		PublicKey:           s.ctKey.Public(),
		SignatureHashFunc:   crypto.SHA256,
	}}
	rekorLogs := map[string]*root.TransparencyLog{hex.EncodeToString(rekorID): {
		BaseURL:             keylessRekorURI,
		ID:                  rekorID,
		ValidityPeriodStart: start,
		HashFunc:            crypto.SHA256,
		PublicKey:           rekorPub,
		SignatureHashFunc:   crypto.SHA256,
	}}
	return root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{fulcio}, ctlogs, []root.TimestampingAuthority{tsa}, rekorLogs)
}

// TrustedRootJSON returns the Sigstore's trusted_root.json (protobuf-specs
// JSON, media type application/vnd.dev.sigstore.trustedroot+json;version=0.1):
// the Fulcio chain, the Rekor log, the CT log and the TSA chain. Log IDs are
// the raw SHA-256 of each log's DER public key.
func (s *Sigstore) TrustedRootJSON(t testing.TB) []byte {
	t.Helper()
	tr, err := s.trustedRoot()
	if err != nil {
		t.Fatalf("signaturetest: trusted root: %v", err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatalf("signaturetest: marshal trusted root: %v", err)
	}
	// Guard against the silent failure this file exists to avoid: a log ID
	// that does not round-trip makes sigstore-go skip every tlog entry.
	parsed, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		t.Fatalf("signaturetest: trusted root does not parse: %v", err)
	}
	for id := range tr.RekorLogs() {
		if _, ok := parsed.RekorLogs()[id]; !ok {
			t.Fatalf("signaturetest: Rekor log %s lost in trusted_root.json", id)
		}
	}
	for id := range tr.CTLogs() {
		if _, ok := parsed.CTLogs()[id]; !ok {
			t.Fatalf("signaturetest: CT log %s lost in trusted_root.json", id)
		}
	}
	return b
}

// WriteTrustedRoot writes TrustedRootJSON to dir/trusted_root.json and
// returns the path.
func (s *Sigstore) WriteTrustedRoot(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "trusted_root.json")
	if err := os.WriteFile(path, s.TrustedRootJSON(t), 0o644); err != nil {
		t.Fatalf("signaturetest: %v", err)
	}
	return path
}

// Identity is who Fulcio certifies: the OIDC issuer, the subject (a URI such
// as a GitHub workflow ref, or an email address) and further Fulcio
// extensions by their sigstore-go JSON names (certificate.Extensions), e.g.
// "githubWorkflowRepository": "acme/app", "githubWorkflowRef": "refs/tags/v1",
// "githubWorkflowSHA", "buildSignerURI", "sourceRepositoryURI". They are
// written as the real OID extensions 1.3.6.1.4.1.57264.1.*: the deprecated
// GitHub ones (.2-.6) as raw strings, the others as DER UTF8String, and the
// issuer both ways (.1 and .8), as Fulcio does.
type Identity struct {
	Issuer     string
	Subject    string
	Extensions map[string]string
}

// BundleOptions adjusts SignImage.
type BundleOptions struct {
	// NoSCT leaves the embedded SCT out of the certificate.
	NoSCT bool
	// NotBefore and NotAfter are the leaf's validity; zero means now-1m and
	// now+10m. The SCT is timestamped NotBefore, as Fulcio's is at issuance.
	NotBefore, NotAfter time.Time
	// SignedAt is the Rekor integrated time and the TSA time; zero means now.
	SignedAt time.Time
	// NoTlog leaves out the Rekor entry.
	NoTlog bool
	// NoTimestamp leaves out the RFC 3161 timestamp.
	NoTimestamp bool
}

// SignImage signs an in-toto statement about imageDigest ("sha256:<hex>" or
// the bare hex) with a fresh key and a Fulcio-style certificate for id, and
// returns the v0.3 bundle as protobuf JSON (media type
// application/vnd.dev.sigstore.bundle.v0.3+json). The statement is
// {"_type": "https://in-toto.io/Statement/v1", "subject": [{"digest":
// {"sha256": hex}}], "predicateType": predicateType, "predicate": predicate};
// predicate nil means {}. A cosign v3 signature is predicateType
// "https://sigstore.dev/cosign/sign/v1" with predicate {}; an attestation is,
// for example, "https://slsa.dev/provenance/v1" with a provenance predicate.
//
// Unless disabled in o, the certificate embeds an SCT from the CT log, and the
// bundle carries a Rekor dsse entry with inclusion promise, inclusion proof and
// signed checkpoint, and an RFC 3161 timestamp.
func (s *Sigstore) SignImage(t testing.TB, id Identity, imageDigest string, predicateType string, predicate []byte, o BundleOptions) []byte {
	t.Helper()
	statement, err := keylessStatement(imageDigest, predicateType, predicate)
	if err != nil {
		t.Fatalf("signaturetest: SignImage: %v", err)
	}
	exts, err := keylessExtensions(id)
	if err != nil {
		t.Fatalf("signaturetest: SignImage: %v", err)
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

	keypair, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatalf("signaturetest: SignImage: %v", err)
	}
	opts := sign.BundleOptions{
		CertificateProvider: &keylessFulcio{s: s, id: id, exts: exts, o: o},
		Context:             t.Context(),
	}
	if !o.NoTimestamp {
		opts.TimestampAuthorities = []*sign.TimestampAuthority{sign.NewTimestampAuthority(&sign.TimestampAuthorityOptions{
			URL:       keylessTSAURI,
			Transport: &keylessTSA{s: s, at: o.SignedAt},
		})}
	}
	if !o.NoTlog {
		opts.TransparencyLogs = []sign.Transparency{&keylessRekor{s: s, at: o.SignedAt}}
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: statement, PayloadType: keylessInTotoType}, keypair, opts)
	if err != nil {
		t.Fatalf("signaturetest: SignImage: %v", err)
	}
	b, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatalf("signaturetest: SignImage: %v", err)
	}
	return b
}

func keylessStatement(imageDigest, predicateType string, predicate []byte) ([]byte, error) {
	hexDigest := imageDigest
	if alg, h, ok := strings.Cut(imageDigest, ":"); ok {
		if alg != "sha256" {
			return nil, fmt.Errorf("image digest %q: want sha256", imageDigest)
		}
		hexDigest = h
	}
	if b, err := hex.DecodeString(hexDigest); err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("image digest %q: want sha256:<64 hex>", imageDigest)
	}
	if predicateType == "" {
		return nil, errors.New("empty predicate type")
	}
	if predicate == nil {
		predicate = []byte("{}")
	}
	if !json.Valid(predicate) {
		return nil, errors.New("predicate is not JSON")
	}
	// Field order and shape as cosign v3 writes them (encoding/json sorts map
	// keys): no subject name.
	return json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{"sha256": strings.ToLower(hexDigest)}}},
		"predicateType": predicateType,
		"predicate":     json.RawMessage(predicate),
	})
}

// keylessExtension is how one Fulcio extension is written.
type keylessExtension struct {
	oid asn1.ObjectIdentifier
	raw bool // deprecated v1 form: the string's bytes, not DER
}

// keylessFulcioExtensions maps sigstore-go's certificate.Extensions JSON names
// to their OIDs (fulcio docs/oid-info.md). "issuer" comes from Identity.Issuer.
var keylessFulcioExtensions = map[string]keylessExtension{
	"githubWorkflowTrigger":               {certificate.OIDGitHubWorkflowTrigger, true},
	"githubWorkflowSHA":                   {certificate.OIDGitHubWorkflowSHA, true},
	"githubWorkflowName":                  {certificate.OIDGitHubWorkflowName, true},
	"githubWorkflowRepository":            {certificate.OIDGitHubWorkflowRepository, true},
	"githubWorkflowRef":                   {certificate.OIDGitHubWorkflowRef, true},
	"buildSignerURI":                      {certificate.OIDBuildSignerURI, false},
	"buildSignerDigest":                   {certificate.OIDBuildSignerDigest, false},
	"runnerEnvironment":                   {certificate.OIDRunnerEnvironment, false},
	"sourceRepositoryURI":                 {certificate.OIDSourceRepositoryURI, false},
	"sourceRepositoryDigest":              {certificate.OIDSourceRepositoryDigest, false},
	"sourceRepositoryRef":                 {certificate.OIDSourceRepositoryRef, false},
	"sourceRepositoryIdentifier":          {certificate.OIDSourceRepositoryIdentifier, false},
	"sourceRepositoryOwnerURI":            {certificate.OIDSourceRepositoryOwnerURI, false},
	"sourceRepositoryOwnerIdentifier":     {certificate.OIDSourceRepositoryOwnerIdentifier, false},
	"buildConfigURI":                      {certificate.OIDBuildConfigURI, false},
	"buildConfigDigest":                   {certificate.OIDBuildConfigDigest, false},
	"buildTrigger":                        {certificate.OIDBuildTrigger, false},
	"runInvocationURI":                    {certificate.OIDRunInvocationURI, false},
	"sourceRepositoryVisibilityAtSigning": {certificate.OIDSourceRepositoryVisibilityAtSigning, false},
}

// keylessExtensions returns the leaf's Fulcio extensions in OID order (the
// precertificate and the final certificate must list them identically).
func keylessExtensions(id Identity) ([]pkix.Extension, error) {
	if id.Issuer == "" || id.Subject == "" {
		return nil, errors.New("identity needs an issuer and a subject")
	}
	issuerDER, err := asn1.MarshalWithParams(id.Issuer, "utf8")
	if err != nil {
		return nil, err
	}
	exts := []pkix.Extension{
		{Id: certificate.OIDIssuer, Value: []byte(id.Issuer)},
		{Id: certificate.OIDIssuerV2, Value: issuerDER},
	}
	for k, v := range id.Extensions {
		e, ok := keylessFulcioExtensions[k]
		if !ok {
			known := make([]string, 0, len(keylessFulcioExtensions))
			for n := range keylessFulcioExtensions {
				known = append(known, n)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("unknown Fulcio extension %q (known: %s; the issuer is Identity.Issuer)", k, strings.Join(known, ", "))
		}
		value := []byte(v)
		if !e.raw {
			if value, err = asn1.MarshalWithParams(v, "utf8"); err != nil {
				return nil, err
			}
		}
		exts = append(exts, pkix.Extension{Id: e.oid, Value: value})
	}
	slices.SortFunc(exts, func(a, b pkix.Extension) int { return keylessCompareOID(a.Id, b.Id) })
	return exts, nil
}

func keylessCompareOID(a, b asn1.ObjectIdentifier) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] - b[i]
		}
	}
	return len(a) - len(b)
}

// keylessFulcio is the sign.CertificateProvider: it certifies the ephemeral
// key for the identity as Fulcio does, SCT included.
type keylessFulcio struct {
	s    *Sigstore
	id   Identity
	exts []pkix.Extension
	o    BundleOptions
}

var _ sign.CertificateProvider = (*keylessFulcio)(nil)

func (f *keylessFulcio) GetCertificate(_ context.Context, keypair sign.Keypair, _ *sign.CertificateProviderOptions) ([]byte, error) {
	return f.s.issueLeaf(keypair.GetPublicKey(), f.id, f.exts, f.o)
}

func (s *Sigstore) issueLeaf(pub crypto.PublicKey, id Identity, exts []pkix.Extension, o BundleOptions) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return nil, err
	}
	skid, err := keylessSKID(pub)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		SubjectKeyId: skid,
	}
	// The subject is empty, so crypto/x509 marks the SAN critical, as Fulcio's.
	switch u, err := url.Parse(id.Subject); {
	case strings.Contains(id.Subject, "@") && !strings.Contains(id.Subject, "://"):
		tmpl.EmailAddresses = []string{id.Subject}
	case err == nil && u.Scheme != "":
		tmpl.URIs = []*url.URL{u}
	default:
		return nil, fmt.Errorf("subject %q is neither a URI nor an email address", id.Subject)
	}
	if o.NoSCT {
		tmpl.ExtraExtensions = exts
		return x509.CreateCertificate(rand.Reader, tmpl, s.fulcioIntermediate, pub, s.fulcioKey)
	}

	// A precertificate (the poison extension where the SCT list will be),
	// logged with the CT key; then the certificate with the SCT list.
	tmpl.ExtraExtensions = append(slices.Clip(exts), pkix.Extension{
		Id: asn1.ObjectIdentifier(ctx509.OIDExtensionCTPoison), Critical: true, Value: asn1.NullBytes,
	})
	preDER, err := x509.CreateCertificate(rand.Reader, tmpl, s.fulcioIntermediate, pub, s.fulcioKey)
	if err != nil {
		return nil, fmt.Errorf("precertificate: %w", err)
	}
	issuer, err := ctx509.ParseCertificate(s.fulcioIntermediate.Raw)
	if err != nil {
		return nil, err
	}
	pre, err := ctx509.ParseCertificate(preDER)
	if err != nil {
		return nil, fmt.Errorf("precertificate: %w", err)
	}
	sct, err := s.signSCT([]*ctx509.Certificate{pre, issuer}, o.NotBefore)
	if err != nil {
		return nil, err
	}
	list, err := x509util.MarshalSCTsIntoSCTList([]*ct.SignedCertificateTimestamp{sct})
	if err != nil {
		return nil, err
	}
	listTLS, err := cttls.Marshal(*list)
	if err != nil {
		return nil, err
	}
	listExt, err := asn1.Marshal(listTLS) // an OCTET STRING, RFC 6962 3.3
	if err != nil {
		return nil, err
	}
	tmpl.ExtraExtensions = append(slices.Clip(exts), pkix.Extension{
		Id: asn1.ObjectIdentifier(ctx509.OIDExtensionCTSCT), Value: listExt,
	})
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.fulcioIntermediate, pub, s.fulcioKey)
	if err != nil {
		return nil, err
	}
	// Check the SCT as sigstore-go will, so a mistake here fails here.
	final, err := ctx509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := ctutil.VerifySCT(s.ctKey.Public(), []*ctx509.Certificate{final, issuer}, sct, true); err != nil {
		return nil, fmt.Errorf("embedded SCT does not verify: %w", err)
	}
	return der, nil
}

// signSCT is the CT log's part: an RFC 6962 v1 SCT over the precertificate
// chain, signed with the CT key.
func (s *Sigstore) signSCT(chain []*ctx509.Certificate, at time.Time) (*ct.SignedCertificateTimestamp, error) {
	logID, err := keylessLogID(s.ctKey.Public())
	if err != nil {
		return nil, err
	}
	sct := &ct.SignedCertificateTimestamp{
		SCTVersion: ct.V1,
		Timestamp:  uint64(at.UnixMilli()),
	}
	copy(sct.LogID.KeyID[:], logID)
	leaf, err := ct.MerkleTreeLeafFromChain(chain, ct.PrecertLogEntryType, sct.Timestamp)
	if err != nil {
		return nil, err
	}
	input, err := ct.SerializeSCTSignatureInput(*sct, ct.LogEntry{Leaf: *leaf})
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, s.ctKey, digest[:])
	if err != nil {
		return nil, err
	}
	sct.Signature = ct.DigitallySigned{
		Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA},
		Signature: sig,
	}
	return sct, nil
}

// keylessTSA is the HTTP transport of sign.TimestampAuthority: it answers
// every RFC 3161 request itself with a response for time at. Adapted from
// generateTimestampingResponse in sigstore-go pkg/testing/ca/ca.go.
type keylessTSA struct {
	s  *Sigstore
	at time.Time
}

func (ts *keylessTSA) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	tsq, err := timestamp.ParseRequest(body)
	if err != nil {
		return nil, fmt.Errorf("TSA: %w", err)
	}
	stamp := timestamp.Timestamp{
		HashAlgorithm:     tsq.HashAlgorithm,
		HashedMessage:     tsq.HashedMessage,
		Time:              ts.at,
		Nonce:             tsq.Nonce,
		Policy:            asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2},
		AddTSACertificate: tsq.Certificates,
		ExtraExtensions:   tsq.Extensions,
	}
	resp, err := stamp.CreateResponseWithOpts(ts.s.tsaLeaf, ts.s.tsaKey, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("TSA: %w", err)
	}
	return &http.Response{
		StatusCode:    http.StatusCreated,
		Status:        "201 Created",
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/timestamp-reply"}},
		Body:          io.NopCloser(bytes.NewReader(resp)),
		ContentLength: int64(len(resp)),
		Request:       req,
	}, nil
}

// keylessRekor is the sign.Transparency: it logs the bundle's DSSE envelope
// with VirtualSigstore's Rekor key at time at.
type keylessRekor struct {
	s  *Sigstore
	at time.Time
}

var _ sign.Transparency = (*keylessRekor)(nil)

func (r *keylessRekor) GetTransparencyLogEntry(_ context.Context, certPEM []byte, b *protobundle.Bundle) error {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return errors.New("rekor: no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("rekor: %w", err)
	}
	pbEnv := b.GetDsseEnvelope()
	if pbEnv == nil || len(pbEnv.GetSignatures()) != 1 {
		return errors.New("rekor: want a DSSE envelope with one signature")
	}
	sig := pbEnv.GetSignatures()[0].GetSig()
	env := &dsse.Envelope{
		PayloadType: pbEnv.GetPayloadType(),
		Payload:     base64.StdEncoding.EncodeToString(pbEnv.GetPayload()),
		Signatures:  []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	}
	entry, err := r.s.rekor.GenerateTlogEntry(cert, env, sig, r.at.Unix(), true)
	if err != nil {
		return fmt.Errorf("rekor: %w", err)
	}
	tle, ok := proto.Clone(entry.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	if !ok {
		return errors.New("rekor: unexpected entry type")
	}
	// tlog.NewEntry keeps the kind and the signed entry timestamp outside the
	// protobuf; a bundle carries both.
	var kind struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(tle.GetCanonicalizedBody(), &kind); err != nil {
		return fmt.Errorf("rekor: entry body: %w", err)
	}
	tle.KindVersion = &protorekor.KindVersion{Kind: kind.Kind, Version: kind.APIVersion}
	set, err := r.s.rekor.RekorSignPayload(tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(tle.GetCanonicalizedBody()),
		IntegratedTime: tle.GetIntegratedTime(),
		LogIndex:       tle.GetLogIndex(),
		LogID:          hex.EncodeToString(tle.GetLogId().GetKeyId()),
	})
	if err != nil {
		return fmt.Errorf("rekor: %w", err)
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	b.VerificationMaterial.TlogEntries = append(b.VerificationMaterial.TlogEntries, tle)
	return nil
}

// keylessCA makes a CA certificate, self-signed when parent is nil. Adapted
// from GenerateRootCa and GenerateFulcioIntermediate in sigstore-go
// pkg/testing/ca/ca.go.
func keylessCA(subject pkix.Name, eku []x509.ExtKeyUsage, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, notBefore, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	skid, err := keylessSKID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// keylessTSALeaf makes the TSA signing certificate: one EKU, timestamping,
// marked critical (RFC 3161 2.3). Adapted from GenerateTSALeafCert in
// sigstore-go pkg/testing/ca/ca.go.
func keylessTSALeaf(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, notBefore, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sigstore-tsa", Organization: []string{"sigstore.dev"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func keylessSKID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha1.Sum(spki.PublicKey.Bytes) //nolint:gosec // key identifier, not a security boundary
	return sum[:], nil
}

// keylessManifest is a raw manifest for remote.Put.
type keylessManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m keylessManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m keylessManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// AttachReferrer pushes bundleJSON to registryHost/repo (plain HTTP) as cosign
// v3 does: an OCI image manifest with artifactType
// application/vnd.dev.sigstore.bundle.v0.3+json, the empty config
// (application/vnd.oci.empty.v1+json, "{}", whose descriptor cosign also
// gives that artifactType), one layer of the bundle media type holding the
// bundle, the annotations dev.sigstore.bundle.content ("dsse-envelope"),
// dev.sigstore.bundle.predicateType (predicateType) and
// org.opencontainers.image.created, and subject = the image descriptor
// (media type, size and digest only). It returns the referrer manifest's
// digest.
func AttachReferrer(t testing.TB, registryHost, repo string, subject v1.Descriptor, bundleJSON []byte, predicateType string) v1.Hash {
	t.Helper()
	r, err := name.NewRepository(registryHost+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatalf("signaturetest: AttachReferrer: %v", err)
	}
	opts := []remote.Option{remote.WithContext(t.Context())}

	config := static.NewLayer([]byte("{}"), keylessEmptyMediaType)
	layer := static.NewLayer(bundleJSON, keylessBundleMediaType)
	descs := make([]v1.Descriptor, 0, 2)
	for _, l := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(r, l, opts...); err != nil {
			t.Fatalf("signaturetest: AttachReferrer: push blob: %v", err)
		}
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		size, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		mt, err := l.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, v1.Descriptor{MediaType: mt, Size: size, Digest: d})
	}
	content := "dsse-envelope"
	var probe struct {
		DsseEnvelope json.RawMessage `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(bundleJSON, &probe); err == nil && probe.DsseEnvelope == nil {
		content = "message-signature"
	}
	descs[0].ArtifactType = keylessBundleMediaType
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        descs[0],
		Layers:        descs[1:],
		Annotations: map[string]string{
			"dev.sigstore.bundle.content":       content,
			"dev.sigstore.bundle.predicateType": predicateType,
			"org.opencontainers.image.created":  time.Now().UTC().Format(time.RFC3339),
		},
		Subject:      &v1.Descriptor{MediaType: subject.MediaType, Size: subject.Size, Digest: subject.Digest},
		ArtifactType: keylessBundleMediaType,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r.Digest(d.String()), keylessManifest{raw: raw, mediaType: types.OCIManifestSchema1}, opts...); err != nil {
		t.Fatalf("signaturetest: AttachReferrer: push manifest: %v", err)
	}
	return d
}
