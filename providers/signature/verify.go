package signature

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"golang.org/x/sync/errgroup"

	"github.com/imagegate/imagegate/providers/facts"
)

// Media types and predicate types of the two cosign layouts.
const (
	BundleMediaTypePrefix  = "application/vnd.dev.sigstore.bundle"
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	DSSEMediaType          = "application/vnd.dsse.envelope.v1+json"
	// CosignSignPredicate marks a bundle statement that is a signature, not an
	// attestation (cosign v3).
	CosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"
	inTotoPayloadType   = "application/vnd.in-toto+json"
)

// Fetcher is what the verifier needs from a registry. *registry.Client
// implements it; a missing manifest must be a facts.CodeNotFound error.
type Fetcher interface {
	Referrers(ctx context.Context, image string, d name.Digest) ([]v1.Descriptor, error)
	Manifest(ctx context.Context, image string, ref name.Reference) ([]byte, v1.Descriptor, error)
	Blob(ctx context.Context, image string, d name.Digest, max int64) ([]byte, error)
}

// Observer counts verifications by format ("bundle", "legacy") and result
// ("verified", "failed").
type Observer interface {
	ObserveVerification(format, result string)
}

// Result is what was found for one digest.
type Result struct {
	Signatures   []facts.Signature
	Attestations []facts.Attestation
	Errors       []string
}

// add appends r's entries to res.
func (res *Result) add(r Result) {
	res.Signatures = append(res.Signatures, r.Signatures...)
	res.Attestations = append(res.Attestations, r.Attestations...)
	res.Errors = append(res.Errors, r.Errors...)
}

// Verifier discovers and verifies signatures. Build it once; Refresh reloads
// its keys and trusted roots while it serves.
type Verifier struct {
	o        Options
	observer Observer
	// trust is the last complete load of keys and roots. Each entry's
	// verification loads it once and uses that state throughout, whatever
	// Refresh swaps in meanwhile.
	trust atomic.Pointer[trustState]
	// epoch counts the refreshes that changed what verifies (Epoch).
	epoch atomic.Uint64

	refreshing sync.Mutex // one Refresh at a time
	mu         sync.Mutex
	lastErr    error // of the last Refresh; nil once one succeeds
}

// New loads every key and trusted root now, fetching TUF roots from their
// mirrors; a bad file or a failed TUF update is an error naming the trust
// entry (and the mirror).
func New(o Options, observer Observer) (*Verifier, error) {
	if o.MaxReferrers <= 0 {
		o.MaxReferrers = 32
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 32
	}
	if o.MaxBundleBytes <= 0 {
		o.MaxBundleBytes = 1 << 20
	}
	if o.MaxPredicateBytes <= 0 {
		o.MaxPredicateBytes = 64 << 10
	}
	ts, err := loadTrust(context.Background(), o)
	if err != nil {
		return nil, err
	}
	v := &Verifier{o: o, observer: observer}
	v.trust.Store(ts)
	return v, nil
}

// Refresh loads the whole trust configuration again, as New did: it re-reads
// the key and trusted-root files and runs a TUF update against each mirror.
// Only a load that fully succeeds replaces the keys and roots in use, at
// once; on any error (a file replaced by garbage, a mirror that is down or
// serves content its signed metadata does not vouch for) the previous ones
// keep verifying and the error, in New's wording, is returned and kept for
// Status. Verifications running meanwhile are not disturbed. Concurrent calls
// run one after the other.
func (v *Verifier) Refresh(ctx context.Context) error {
	v.refreshing.Lock()
	defer v.refreshing.Unlock()
	ts, err := loadTrust(ctx, v.o)
	if err == nil {
		if old := v.trust.Swap(ts); old == nil || old.fingerprint != ts.fingerprint {
			v.epoch.Add(1)
		}
	}
	v.mu.Lock()
	v.lastErr = err
	v.mu.Unlock()
	return err
}

// Epoch changes whenever a Refresh loads keys or roots that differ from the
// ones in use (a rotated root, a replaced key, changed key options); a
// refresh that loads the same material leaves it alone. Results of Check
// made under an earlier epoch may no longer hold.
func (v *Verifier) Epoch() uint64 { return v.epoch.Load() }

// Status is the error of the last Refresh, nil if it succeeded (or none ran
// yet). While it is not nil, the last good keys and roots are in use.
func (v *Verifier) Status() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lastErr
}

// Configured reports whether any key or trusted root is configured. Without
// one nothing can verify, so callers skip discovery.
func (v *Verifier) Configured() bool {
	ts := v.trust.Load()
	return len(ts.keys)+len(ts.roots) > 0
}

// Check finds every signature and attestation stored for d, in both layouts,
// and verifies each. The error is non-nil only when discovery could not be
// completed (a listing or blob that could not be read): then nothing is known,
// which is not the same as "unsigned".
func (v *Verifier) Check(ctx context.Context, f Fetcher, image string, d name.Digest) (Result, error) {
	var (
		mu  sync.Mutex
		res Result
	)
	add := func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		res.add(r)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		r, err := v.referrers(gctx, f, image, d)
		add(r)
		return err
	})
	for _, suffix := range []string{".sig", ".att"} {
		g.Go(func() error {
			r, err := v.legacyTag(gctx, f, image, d, suffix)
			add(r)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Result{}, err
	}
	sortResult(&res)
	return res, nil
}

// referrers verifies every Sigstore bundle attached as an OCI referrer. Each
// referrer is opened: artifactType alone is not trusted to say what it holds.
func (v *Verifier) referrers(ctx context.Context, f Fetcher, image string, d name.Digest) (Result, error) {
	var res Result
	descs, err := f.Referrers(ctx, image, d)
	if err != nil {
		return res, err
	}
	// Likely bundles first, so a flood of other artifacts cannot crowd them out.
	sort.SliceStable(descs, func(i, j int) bool { return referrerRank(descs[i]) < referrerRank(descs[j]) })
	if len(descs) > v.o.MaxReferrers {
		res.Errors = append(res.Errors, fmt.Sprintf("%d referrers of %s, only the first %d were checked", len(descs), d.DigestStr(), v.o.MaxReferrers))
		descs = descs[:v.o.MaxReferrers]
	}
	results := make([]Result, len(descs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, desc := range descs {
		g.Go(func() error {
			raw, _, err := f.Manifest(gctx, image, d.Context().Digest(desc.Digest.String()))
			if err != nil {
				if facts.CodeOf(err) == facts.CodeNotFound {
					return nil // listed but gone: nothing to verify
				}
				return err
			}
			m, err := v1.ParseManifest(bytes.NewReader(raw))
			if err != nil || len(m.Layers) == 0 || !strings.HasPrefix(string(m.Layers[0].MediaType), BundleMediaTypePrefix) {
				return nil // not a Sigstore bundle (an SBOM, a Notary signature, …)
			}
			where := "bundle referrer " + desc.Digest.String()
			if m.Layers[0].Size > v.o.MaxBundleBytes {
				results[i].Errors = append(results[i].Errors, fmt.Sprintf("%s: bundle is %d bytes, more than the limit of %d", where, m.Layers[0].Size, v.o.MaxBundleBytes))
				return nil
			}
			blob, err := f.Blob(gctx, image, d.Context().Digest(m.Layers[0].Digest.String()), v.o.MaxBundleBytes)
			if err != nil {
				if facts.CodeOf(err) == facts.CodeNotFound {
					results[i].Errors = append(results[i].Errors, fmt.Sprintf("%s: %v", where, err))
					return nil
				}
				return blobFault(image, where, m.Layers[0].Size, err)
			}
			results[i] = v.verifyBundle(where, blob, d)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	for _, r := range results {
		res.add(r)
	}
	return res, nil
}

// referrerRank orders referrers for opening, the likeliest Sigstore bundles
// first. Ranking on a bundle artifactType alone was not enough: registries
// that report the config media type as artifactType (go-containerregistry's
// registry does) list a cosign bundle as application/vnd.oci.empty.v1+json,
// so a few thousand SBOM referrers listed before it pushed it out of the
// MaxReferrers that are opened. Such listings still carry the manifest's
// annotations, which cosign sets; an artifactType that names something else
// (an SBOM, a Notary signature) goes last.
func referrerRank(d v1.Descriptor) int {
	switch {
	case strings.HasPrefix(d.ArtifactType, BundleMediaTypePrefix):
		return 0
	case d.Annotations[bundleContentAnnotation] != "" || d.Annotations[bundlePredicateTypeAnnotation] != "":
		return 1
	case d.ArtifactType == "" || d.ArtifactType == emptyConfigMediaType:
		return 2 // cannot tell without opening it
	default:
		return 3
	}
}

// Annotations cosign puts on a bundle referrer's manifest, and the config
// media type of such a manifest.
const (
	bundleContentAnnotation       = "dev.sigstore.bundle.content"
	bundlePredicateTypeAnnotation = "dev.sigstore.bundle.predicateType"
	emptyConfigMediaType          = "application/vnd.oci.empty.v1+json"
)

// verifyBundle verifies one v0.x Sigstore bundle against the image digest.
func (v *Verifier) verifyBundle(where string, blob []byte, d name.Digest) Result {
	var res Result
	fail := func(format string, args ...any) Result {
		v.observe("bundle", "failed")
		res.Errors = append(res.Errors, where+": "+fmt.Sprintf(format, args...))
		return res
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(blob); err != nil {
		return fail("not a valid Sigstore bundle: %v", err)
	}
	digestHex, err := digestHex(d)
	if err != nil {
		return fail("%v", err)
	}
	predicateType := ""
	var predicate json.RawMessage
	if env, err := b.Envelope(); err == nil && env != nil {
		st, err := parseStatement(env.Envelope)
		if err != nil {
			return fail("%v", err)
		}
		if !st.hasSubject(digestHex) {
			return fail("bundle subject is %s, image is %s", st.subjects(), d.DigestStr())
		}
		predicateType, predicate = st.PredicateType, st.Predicate
	}
	signer, ts, err := v.verifyEntity(&b, byDigest(digestHex))
	if err != nil {
		return fail("%v", err)
	}
	v.observe("bundle", "verified")
	v.record(&res, "bundle", d.DigestStr(), signer, ts, predicateType, predicate)
	return res
}

// legacyTag verifies the entries of a cosign sha256-<hex>.sig or .att tag.
func (v *Verifier) legacyTag(ctx context.Context, f Fetcher, image string, d name.Digest, suffix string) (Result, error) {
	var res Result
	tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + suffix)
	raw, _, err := f.Manifest(ctx, image, tag)
	if err != nil {
		if facts.CodeOf(err) == facts.CodeNotFound {
			return res, nil // no legacy tag: nothing signed in this layout
		}
		return res, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("legacy %s tag: manifest: %v", suffix, err))
		return res, nil
	}
	layers := m.Layers
	if len(layers) > v.o.MaxEntries {
		res.Errors = append(res.Errors, fmt.Sprintf("legacy %s tag has %d layers, only the first %d were checked", suffix, len(layers), v.o.MaxEntries))
		layers = layers[:v.o.MaxEntries]
	}
	results := make([]Result, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, l := range layers {
		where := fmt.Sprintf("legacy %s layer %d", suffix, i)
		if l.Size > v.o.MaxBundleBytes {
			results[i].Errors = []string{fmt.Sprintf("%s: %d bytes, more than the limit of %d", where, l.Size, v.o.MaxBundleBytes)}
			continue
		}
		switch {
		case suffix == ".sig" && l.MediaType == SimpleSigningMediaType:
		case suffix == ".att" && l.MediaType == DSSEMediaType:
		default:
			continue
		}
		g.Go(func() error {
			blob, err := f.Blob(gctx, image, d.Context().Digest(l.Digest.String()), v.o.MaxBundleBytes)
			if err != nil {
				if facts.CodeOf(err) == facts.CodeNotFound {
					results[i].Errors = []string{fmt.Sprintf("%s: %v", where, err)}
					return nil
				}
				return blobFault(image, where, l.Size, err)
			}
			if suffix == ".sig" {
				results[i] = v.verifyLegacySig(where, blob, l.Annotations, d)
			} else {
				results[i] = v.verifyLegacyAtt(where, blob, l.Annotations, d)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	for _, r := range results {
		res.add(r)
	}
	return res, nil
}

// blobFault is the error for a signature blob that could not be read. Its
// descriptor declared a size within MaxBundleBytes (checked before the
// fetch), so a body over the limit (invalid_content) is not the blob its
// digest names: the registry failed to serve it, as with a digest mismatch.
// That is "could not look" — recorded as a verification error instead, the
// signature would silently drop out of facts cached for hours.
func blobFault(image, where string, declared int64, err error) error {
	var fe *facts.Error
	if declared > 0 && errors.As(err, &fe) && fe.Code == facts.CodeInvalidContent {
		return &facts.Error{Code: facts.CodeUnavailable, Image: image, Err: fmt.Errorf(
			"%s: the registry sent more than the %d bytes its descriptor declares (not the content of its digest): %w", where, declared, fe.Err)}
	}
	return err
}

// simpleSigning is the part of cosign's simple-signing payload imagegate
// checks: the signed manifest digest.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

func (v *Verifier) verifyLegacySig(where string, payload []byte, ann map[string]string, d name.Digest) Result {
	var res Result
	fail := func(format string, args ...any) Result {
		v.observe("legacy", "failed")
		res.Errors = append(res.Errors, where+": "+fmt.Sprintf(format, args...))
		return res
	}
	var ss simpleSigning
	if err := json.Unmarshal(payload, &ss); err != nil {
		return fail("payload is not a simple-signing document: %v", err)
	}
	// sigstore-go verifies the signature over the payload; that the payload
	// names this image is imagegate's check.
	if got := ss.Critical.Image.DockerManifestDigest; got != d.DigestStr() {
		return fail("signed payload is for %s, image is %s", got, d.DigestStr())
	}
	e, err := newLegacySig(payload, ann)
	if err != nil {
		return fail("%v", err)
	}
	signer, ts, err := v.verifyEntity(e, func() verify.ArtifactPolicyOption { return verify.WithArtifact(bytes.NewReader(payload)) })
	if err != nil {
		return fail("%v", err)
	}
	v.observe("legacy", "verified")
	v.record(&res, "legacy", d.DigestStr(), signer, ts, CosignSignPredicate, nil)
	return res
}

func (v *Verifier) verifyLegacyAtt(where string, raw []byte, ann map[string]string, d name.Digest) Result {
	var res Result
	fail := func(format string, args ...any) Result {
		v.observe("legacy", "failed")
		res.Errors = append(res.Errors, where+": "+fmt.Sprintf(format, args...))
		return res
	}
	e, env, err := newLegacyEnvelope(raw, ann)
	if err != nil {
		return fail("%v", err)
	}
	st, err := parseStatement(env)
	if err != nil {
		return fail("%v", err)
	}
	digestHex, err := digestHex(d)
	if err != nil {
		return fail("%v", err)
	}
	if !st.hasSubject(digestHex) {
		return fail("attestation subject is %s, image is %s", st.subjects(), d.DigestStr())
	}
	signer, ts, err := v.verifyEntity(e, byDigest(digestHex))
	if err != nil {
		return fail("%v", err)
	}
	v.observe("legacy", "verified")
	v.record(&res, "legacy", d.DigestStr(), signer, ts, st.PredicateType, st.Predicate)
	return res
}

// byDigest binds verification to the image digest: for DSSE, an in-toto
// subject must carry it; for a message signature, it is the signed digest.
func byDigest(hexDigest string) func() verify.ArtifactPolicyOption {
	return func() verify.ArtifactPolicyOption { return verify.WithArtifactDigest("sha256", mustHex(hexDigest)) }
}

// verifyEntity tries the trusted roots for a certificate-signed entity and
// the named keys for a key-signed one; the first that verifies wins. artifact
// makes a fresh artifact option per attempt (a reader is consumed by one).
// Identity is not checked here: that is policy's job, with every verified
// signer reported.
func (v *Verifier) verifyEntity(e verify.SignedEntity, artifact func() verify.ArtifactPolicyOption) (facts.Signer, string, error) {
	vc, err := e.VerificationContent()
	if err != nil {
		return facts.Signer{}, "", fmt.Errorf("no verification material: %w", err)
	}
	entries, err := e.TlogEntries()
	if err != nil {
		return facts.Signer{}, "", fmt.Errorf("transparency-log entries: %w", err)
	}
	trust := v.trust.Load()
	if vc.Certificate() != nil {
		if len(trust.roots) == 0 {
			return facts.Signer{}, "", errors.New("keyless signature, but no trust.trustedRoots or trust.tuf are configured")
		}
		if len(entries) == 0 && trust.thresholds.TransparencyLog > 0 {
			return facts.Signer{}, "", fmt.Errorf("%s has no transparency-log entry, but trust.thresholds.transparencyLog is %d", noTlog(e), trust.thresholds.TransparencyLog)
		}
		var reasons []string
		for _, r := range trust.roots {
			res, err := r.v.Verify(e, verify.NewPolicy(artifact(), verify.WithoutIdentitiesUnsafe()))
			if err != nil {
				reasons = append(reasons, fmt.Sprintf("not verified by trusted root %q: %v", r.name, err))
				continue
			}
			return keylessSigner(res), timestamp(res), nil
		}
		return facts.Signer{}, "", errors.New(strings.Join(reasons, "; "))
	}
	if len(trust.keys) == 0 {
		return facts.Signer{}, "", errors.New("signed with a key, but no trust.keys are configured")
	}
	var names []string
	var other []string
	for _, k := range trust.keys {
		res, err := k.v.Verify(e, verify.NewPolicy(artifact(), verify.WithKey()))
		if err != nil {
			names = append(names, k.name)
			if !isSignatureMismatch(err) {
				other = append(other, fmt.Sprintf("key %q: %v", k.name, err))
			}
			continue
		}
		if k.tlog == nil {
			return facts.Signer{Kind: "key", Key: k.name}, timestamp(res), nil
		}
		// This key made the signature; now it must also be logged.
		if len(entries) == 0 {
			other = append(other, fmt.Sprintf("key %q requires a transparency-log entry; %s has none", k.name, noTlog(e)))
			continue
		}
		res, err = k.tlog.Verify(e, verify.NewPolicy(artifact(), verify.WithKey()))
		if err != nil {
			other = append(other, fmt.Sprintf("key %q requires a transparency-log entry verified by trusted root %q: %v", k.name, k.tlogRoot, err))
			continue
		}
		return facts.Signer{Kind: "key", Key: k.name}, timestamp(res), nil
	}
	if len(other) > 0 {
		return facts.Signer{}, "", errors.New(strings.Join(other, "; "))
	}
	return facts.Signer{}, "", fmt.Errorf("signed by a key not in config (tried %s)", strings.Join(names, ", "))
}

// noTlog names, in the terms of e's layout, what lacks a transparency-log
// entry.
func noTlog(e verify.SignedEntity) string {
	if _, ok := e.(*legacyEntity); ok {
		return "the signature (no " + annBundle + " annotation)"
	}
	return "the bundle"
}

// isSignatureMismatch reports a plain "this key did not make this signature".
func isSignatureMismatch(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "failed to verify signature") || strings.Contains(msg, "invalid signature") ||
		strings.Contains(msg, "verification error") || strings.Contains(msg, "crypto/rsa: verification")
}

func keylessSigner(res *verify.VerificationResult) facts.Signer {
	s := facts.Signer{Kind: "keyless"}
	if res.Signature == nil || res.Signature.Certificate == nil {
		return s
	}
	c := res.Signature.Certificate
	s.Issuer = c.CertificateIssuer
	if c.Extensions.Issuer != "" {
		s.Issuer = c.Extensions.Issuer
	}
	s.Subject = c.SubjectAlternativeName
	s.Extensions = extensionsMap(c.Extensions)
	return s
}

// extensionsMap flattens the Fulcio extensions to their non-empty JSON fields
// (githubWorkflowRepository, sourceRepositoryRef, buildSignerURI, …).
func extensionsMap(e certificate.Extensions) map[string]string {
	b, err := json.Marshal(e)
	if err != nil {
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil
	}
	delete(m, "issuer")
	if len(m) == 0 {
		return nil
	}
	return m
}

func timestamp(res *verify.VerificationResult) string {
	if res == nil || len(res.VerifiedTimestamps) == 0 {
		return ""
	}
	return res.VerifiedTimestamps[0].Timestamp.UTC().Format(time.RFC3339)
}

func (v *Verifier) record(res *Result, format, digest string, signer facts.Signer, ts, predicateType string, predicate json.RawMessage) {
	if predicateType == "" || predicateType == CosignSignPredicate {
		res.Signatures = append(res.Signatures, facts.Signature{Format: format, Digest: digest, Signer: signer, Timestamp: ts})
		return
	}
	if int64(len(predicate)) > v.o.MaxPredicateBytes {
		predicate = json.RawMessage(fmt.Sprintf(`{"imagegateOmitted":{"reason":"predicate larger than limits.maxPredicateBytes","bytes":%d,"limit":%d}}`, len(predicate), v.o.MaxPredicateBytes))
	}
	res.Attestations = append(res.Attestations, facts.Attestation{Format: format, Digest: digest, PredicateType: predicateType, Signer: signer, Timestamp: ts, Predicate: predicate})
}

func (v *Verifier) observe(format, result string) {
	if v.observer != nil {
		v.observer.ObserveVerification(format, result)
	}
}

// statement is an in-toto statement (v0.1 or v1).
type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate json.RawMessage `json:"predicate"`
}

func parseStatement(env *dsse.Envelope) (*statement, error) {
	if env.PayloadType != inTotoPayloadType {
		return nil, fmt.Errorf("DSSE payload type %q, want %q", env.PayloadType, inTotoPayloadType)
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		if raw, err = base64.URLEncoding.DecodeString(env.Payload); err != nil {
			return nil, fmt.Errorf("DSSE payload is not base64: %w", err)
		}
	}
	var st statement
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("DSSE payload is not an in-toto statement: %w", err)
	}
	if st.PredicateType == "" {
		return nil, errors.New("in-toto statement has no predicateType")
	}
	return &st, nil
}

func (s *statement) hasSubject(hexDigest string) bool {
	for _, sub := range s.Subject {
		if strings.EqualFold(sub.Digest["sha256"], hexDigest) {
			return true
		}
	}
	return false
}

func (s *statement) subjects() string {
	var out []string
	for _, sub := range s.Subject {
		if h := sub.Digest["sha256"]; h != "" {
			out = append(out, "sha256:"+h)
		}
	}
	if len(out) == 0 {
		return "(none with a sha256 digest)"
	}
	return strings.Join(out, ", ")
}

func digestHex(d name.Digest) (string, error) {
	alg, h, ok := strings.Cut(d.DigestStr(), ":")
	if !ok || alg != "sha256" {
		return "", fmt.Errorf("digest %s: only sha256 image digests can be verified", d.DigestStr())
	}
	return h, nil
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

func sortResult(r *Result) {
	sort.SliceStable(r.Signatures, func(i, j int) bool { return r.Signatures[i].Format < r.Signatures[j].Format })
	sort.SliceStable(r.Attestations, func(i, j int) bool {
		a, b := r.Attestations[i], r.Attestations[j]
		if a.PredicateType != b.PredicateType {
			return a.PredicateType < b.PredicateType
		}
		return a.Format < b.Format
	})
	sort.Strings(r.Errors)
}
