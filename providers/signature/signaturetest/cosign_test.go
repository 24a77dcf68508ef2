package signaturetest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
)

// The storage facts DESIGN.md ("Signatures and attestations") relies on.
const (
	bundleMediaType      = "application/vnd.dev.sigstore.bundle.v0.3+json"
	emptyMediaType       = "application/vnd.oci.empty.v1+json"
	simpleSigningType    = "application/vnd.dev.cosign.simplesigning.v1+json"
	dsseMediaType        = "application/vnd.dsse.envelope.v1+json"
	inTotoPayloadType    = "application/vnd.in-toto+json"
	signatureAnnotation  = "dev.cosignproject.cosign/signature"
	signPredicateType    = "https://sigstore.dev/cosign/sign/v1"
	slsaV1PredicateType  = "https://slsa.dev/provenance/v1"
	inTotoStatementV1    = "https://in-toto.io/Statement/v1"
	inTotoStatementV01   = "https://in-toto.io/Statement/v0.1"
	simpleSigningTypeVal = "cosign container image signature"
)

// provenance is a SLSA provenance v1 predicate.
var provenance = []byte(`{
  "buildDefinition": {
    "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
    "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": "https://github.com/acme/demo", "path": ".github/workflows/release.yml"}},
    "resolvedDependencies": [{"uri": "git+https://github.com/acme/demo@refs/heads/main", "digest": {"gitCommit": "0123456789abcdef0123456789abcdef01234567"}}]
  },
  "runDetails": {
    "builder": {"id": "https://github.com/acme/demo/.github/workflows/release.yml@refs/heads/main"},
    "metadata": {"invocationId": "https://github.com/acme/demo/actions/runs/1/attempts/1", "startedOn": "2025-06-01T08:00:00Z", "finishedOn": "2025-06-01T08:25:00Z"}
  }
}`)

func TestFindCosignMissing(t *testing.T) {
	t.Setenv("IMAGEGATE_TOOLS", t.TempDir())
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		signaturetest.FindCosign(ft, "v3")
	}()
	if !strings.Contains(ft.msg, "cosign v3 not built: run `make tools`") {
		t.Errorf("FindCosign with no binary: fatal %q, want it to say `make tools`", ft.msg)
	}
}

// fatalRecorder records the first Fatalf and stops the calling function.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}

func (f *fatalRecorder) Helper() {}

func TestCosignV3(t *testing.T) { testCosign(t, "v3") }
func TestCosignV2(t *testing.T) { testCosign(t, "v2") }

// testCosign signs and attests with one cosign major against a registry with
// the referrers API (ggcr) and one without (distribution), in both layouts,
// and checks what lands in the registry.
func testCosign(t *testing.T, major string) {
	c := signaturetest.FindCosign(t, major)
	k := c.GenerateKeyPair(t, t.TempDir())
	other := c.GenerateKeyPair(t, t.TempDir())
	if k.Hint(t) == other.Hint(t) {
		t.Fatal("two generated key pairs share a public key")
	}

	for _, reg := range []struct {
		name         string
		host         string
		referrersAPI bool
	}{
		{"ggcr", registrytest.New(t).Host, true},
		{"distribution", registrytest.StartDistribution(t), false},
	} {
		t.Run(reg.name, func(t *testing.T) {
			r := &env{c: c, k: k, other: other, host: reg.host, referrersAPI: reg.referrersAPI, major: major}
			probe, _ := r.push(t, "probe")
			if got := referrersAPI(t, probe); got != reg.referrersAPI {
				t.Fatalf("%s referrers API = %v, want %v", reg.name, got, reg.referrersAPI)
			}
			t.Run("bundle sign", r.bundleSign)
			t.Run("legacy sign", r.legacySign)
			t.Run("bundle attest", r.bundleAttest)
			t.Run("legacy attest", r.legacyAttest)
			t.Run("URI type attest", r.uriAttest)
			t.Run("recursive index", r.recursiveIndex)
		})
	}
}

type env struct {
	c            signaturetest.Cosign
	k, other     signaturetest.KeyPair
	host         string
	referrersAPI bool
	major        string
}

// push pushes a fresh random image by digest to repo and returns its reference.
func (e *env) push(t *testing.T, repo string) (name.Digest, v1.Descriptor) {
	t.Helper()
	img := registrytest.Build(t, registrytest.Image{})
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := digestRef(t, e.host+"/"+repo+"@"+d.String())
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref, descriptor(t, ref)
}

// checkVerify runs cosign verify (predicateType "") or verify-attestation
// with the signing key, which must succeed, and with another key pair, which
// must fail for want of a matching signature.
func (e *env) checkVerify(t *testing.T, image name.Digest, layout signaturetest.Layout, predicateType string) {
	t.Helper()
	verify := func(k signaturetest.KeyPair) error {
		if predicateType != "" {
			return e.c.VerifyAttestation(t, k, image.String(), layout, predicateType)
		}
		return e.c.Verify(t, k, image.String(), layout)
	}
	if err := verify(e.k); err != nil {
		t.Errorf("cosign verify with the signing key: %v", err)
	}
	// cosign says "no matching signatures" or "no matching attestations"
	// when nothing verifies with the key; anything else (a registry or
	// network error) would make this check pass for the wrong reason.
	if err := verify(e.other); err == nil || !strings.Contains(err.Error(), "Error: no matching ") {
		t.Errorf("cosign verify with another key pair: %v, want no matching signatures/attestations", err)
	}
}

func (e *env) bundleSign(t *testing.T) {
	image, desc := e.push(t, "bundle/sign")
	e.c.Sign(t, e.k, image.String(), signaturetest.Bundle)

	st := e.checkReferrer(t, image, desc, signPredicateType)
	if st.Type != inTotoStatementV1 {
		t.Errorf("statement _type = %q, want %q", st.Type, inTotoStatementV1)
	}
	// v3 writes "predicate": {}, v2 no predicate at all.
	if want := map[string]string{"v3": "{}", "v2": ""}[e.major]; string(st.Predicate) != want {
		t.Errorf("sign statement predicate = %q, want %q", st.Predicate, want)
	}
	e.checkTags(t, image, e.fallbackTags(image))
	e.checkVerify(t, image, signaturetest.Bundle, "")
	e.checkOtherLayout(t, image, signaturetest.Legacy)
}

func (e *env) legacySign(t *testing.T) {
	image, _ := e.push(t, "legacy/sign")
	e.c.Sign(t, e.k, image.String(), signaturetest.Legacy)

	e.checkLegacySig(t, image)
	e.checkTags(t, image, []string{tagFor(image, ".sig")})
	e.checkNoReferrers(t, image)
	e.checkVerify(t, image, signaturetest.Legacy, "")

	e.checkOtherLayout(t, image, signaturetest.Bundle)
}

// checkOtherLayout pins what cosign verify does when asked for the layout
// the image was not signed in. Layout is a hint to cosign, not a filter: v3
// asked for bundles falls back to the legacy tags when it finds no bundle,
// and v2 asked for legacy tags switches to bundles when it finds one.
func (e *env) checkOtherLayout(t *testing.T, image name.Digest, asked signaturetest.Layout) {
	t.Helper()
	err := e.c.Verify(t, e.k, image.String(), asked)
	fallsBack := (e.major == "v3" && asked == signaturetest.Bundle) || (e.major == "v2" && asked == signaturetest.Legacy)
	switch {
	case fallsBack && err != nil:
		t.Errorf("%s verify asked for %s: %v, want it to fall back to the other layout", e.c, asked, err)
	case !fallsBack && err == nil:
		t.Errorf("%s verify asked for %s succeeded, want an error (nothing in that layout)", e.c, asked)
	case err != nil:
		want := map[string]string{"v3": "Error: no signatures found", "v2": "Error: no valid bundles exist in registry"}[e.major]
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s verify asked for %s: %v, want %q", e.c, asked, err, want)
		}
	}
}

func (e *env) bundleAttest(t *testing.T) {
	image, desc := e.push(t, "bundle/attest")
	e.c.Attest(t, e.k, image.String(), signaturetest.Bundle, "slsaprovenance1", provenance)

	st := e.checkReferrer(t, image, desc, slsaV1PredicateType)
	// attest writes in-toto Statement v0.1 in both layouts; only sign's
	// statement is v1.
	if st.Type != inTotoStatementV01 {
		t.Errorf("statement _type = %q, want %q", st.Type, inTotoStatementV01)
	}
	jsonEqual(t, "statement predicate", st.Predicate, e.wantProvenance())
	e.checkTags(t, image, e.fallbackTags(image))
	e.checkVerify(t, image, signaturetest.Bundle, "slsaprovenance1")
}

// uriAttest attests with a predicate type given as a URI rather than a
// short name: cosign stores the predicate JSON unchanged.
func (e *env) uriAttest(t *testing.T) {
	const predicateType = "https://imagegate.dev/test/scan/v1"
	predicate := []byte(`{"scanner": {"name": "imagegate-test", "version": "1.0"}, "result": {"critical": 0, "high": 2}, "invocationId": "kept"}`)
	image, desc := e.push(t, "uri/attest")
	e.c.Attest(t, e.k, image.String(), signaturetest.Bundle, predicateType, predicate)

	st := e.checkReferrer(t, image, desc, predicateType)
	if st.Type != inTotoStatementV01 {
		t.Errorf("statement _type = %q, want %q", st.Type, inTotoStatementV01)
	}
	jsonEqual(t, "statement predicate", st.Predicate, predicate)
	e.checkVerify(t, image, signaturetest.Bundle, predicateType)
}

func (e *env) legacyAttest(t *testing.T) {
	image, _ := e.push(t, "legacy/attest")
	e.c.Attest(t, e.k, image.String(), signaturetest.Legacy, "slsaprovenance1", provenance)

	tag := tagFor(image, ".att")
	m, layer := singleLayer(t, image.Context().Tag(tag))
	if m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("%s config media type = %q, want %q", tag, m.Config.MediaType, types.OCIConfigJSON)
	}
	ld := m.Layers[0]
	if ld.MediaType != dsseMediaType {
		t.Errorf("%s layer media type = %q, want %q", tag, ld.MediaType, dsseMediaType)
	}
	wantAnn := map[string]string{signatureAnnotation: "", "predicateType": slsaV1PredicateType}
	if !reflect.DeepEqual(ld.Annotations, wantAnn) {
		t.Errorf("%s layer annotations = %v, want %v", tag, ld.Annotations, wantAnn)
	}
	var env envelope
	if err := json.Unmarshal(layer, &env); err != nil {
		t.Fatalf("%s layer is not a DSSE envelope: %v\n%s", tag, err, layer)
	}
	st := e.checkEnvelope(t, env, image.DigestStr())
	if st.Type != inTotoStatementV01 {
		t.Errorf("statement _type = %q, want %q", st.Type, inTotoStatementV01)
	}
	if st.PredicateType != slsaV1PredicateType {
		t.Errorf("statement predicateType = %q, want %q", st.PredicateType, slsaV1PredicateType)
	}
	if got, want := st.Subject[0].Name, image.Context().Name(); got != want {
		t.Errorf("statement subject name = %q, want %q", got, want)
	}
	jsonEqual(t, "statement predicate", st.Predicate, e.wantProvenance())
	e.checkTags(t, image, []string{tag})
	e.checkNoReferrers(t, image)
	e.checkVerify(t, image, signaturetest.Legacy, "slsaprovenance1")
}

func (e *env) recursiveIndex(t *testing.T) {
	for _, layout := range []signaturetest.Layout{signaturetest.Bundle, signaturetest.Legacy} {
		t.Run(layout.String(), func(t *testing.T) {
			repo := "multi/" + layout.String()
			idx, children := registrytest.BuildIndex(t,
				registrytest.Image{OS: "linux", Arch: "amd64"},
				registrytest.Image{OS: "linux", Arch: "arm64", Variant: "v8"})
			d, err := idx.Digest()
			if err != nil {
				t.Fatal(err)
			}
			image := digestRef(t, e.host+"/"+repo+"@"+d.String())
			if err := remote.WriteIndex(image, idx); err != nil {
				t.Fatalf("push index %s: %v", image, err)
			}
			e.c.Sign(t, e.k, image.String(), layout, "--recursive")

			var wantTags []string
			for i, h := range append([]v1.Hash{d}, children...) {
				ref := image.Context().Digest(h.String())
				t.Run([]string{"index", "amd64", "arm64"}[i], func(t *testing.T) {
					if layout == signaturetest.Bundle {
						e.checkReferrer(t, ref, descriptor(t, ref), signPredicateType)
						wantTags = append(wantTags, e.fallbackTags(ref)...)
					} else {
						e.checkLegacySig(t, ref)
						e.checkNoReferrers(t, ref)
						wantTags = append(wantTags, tagFor(ref, ".sig"))
					}
					if i > 0 {
						if err := e.c.Verify(t, e.k, ref.String(), layout); err != nil {
							t.Errorf("cosign verify of the %s child: %v", []string{"index", "amd64", "arm64"}[i], err)
						}
					}
				})
			}
			e.checkTags(t, image, wantTags)
			e.checkVerify(t, image, layout, "")
		})
	}
}

// wantProvenance is the predicate as cosign stores it: v3 keeps the file's
// JSON; v2 decodes SLSA v1 provenance into in-toto-golang's struct and
// re-encodes it, which renames runDetails.metadata.invocationId to
// invocationID.
func (e *env) wantProvenance() []byte {
	if e.major == "v2" {
		return bytes.Replace(provenance, []byte(`"invocationId"`), []byte(`"invocationID"`), 1)
	}
	return provenance
}

// checkReferrer asserts that image has exactly one referrer, a Sigstore
// bundle with a DSSE in-toto statement of predicateType about image, signed
// by e.k, and returns the statement.
func (e *env) checkReferrer(t *testing.T, image name.Digest, imageDesc v1.Descriptor, predicateType string) statement {
	t.Helper()
	idx, err := remote.Referrers(image)
	if err != nil {
		t.Fatalf("referrers of %s: %v", image, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("referrers of %s: %d entries, want 1: %s", image, len(im.Manifests), js(im))
	}
	entry := im.Manifests[0]
	if !e.referrersAPI {
		// The listing came from the fallback tag, an OCI index.
		fb, err := remote.Get(image.Context().Tag(tagFor(image, "")))
		if err != nil {
			t.Fatalf("fallback tag of %s: %v", image, err)
		}
		if fb.MediaType != types.OCIImageIndex {
			t.Errorf("fallback tag %s media type = %q, want %q", tagFor(image, ""), fb.MediaType, types.OCIImageIndex)
		}
	}
	// The listing's artifactType is not the manifest's: ggcr's referrers API
	// reports the config media type (and copies the manifest annotations);
	// the fallback index entry, written by cosign's own go-containerregistry,
	// carries the manifest's artifactType with cosign v3 (ggcr v0.21.7) but
	// the config media type with cosign v2 (ggcr v0.20.7), and no
	// annotations. Hence "do not filter on artifactType alone".
	wantEntryType := bundleMediaType
	if e.referrersAPI || e.major == "v2" {
		wantEntryType = emptyMediaType
	}
	if !e.referrersAPI && len(entry.Annotations) != 0 {
		t.Errorf("fallback index entry annotations = %v, want none", entry.Annotations)
	}
	if e.referrersAPI {
		if got := entry.Annotations["dev.sigstore.bundle.predicateType"]; got != predicateType {
			t.Errorf("referrers entry annotation predicateType = %q, want %q", got, predicateType)
		}
	}
	if entry.ArtifactType != wantEntryType || entry.MediaType != types.OCIManifestSchema1 {
		t.Errorf("referrers entry = %s, want artifactType %q mediaType %q", js(entry), wantEntryType, types.OCIManifestSchema1)
	}

	ref := image.Context().Digest(entry.Digest.String())
	m, blob := singleLayer(t, ref)
	if m.ArtifactType != bundleMediaType {
		t.Errorf("referrer manifest artifactType = %q, want %q", m.ArtifactType, bundleMediaType)
	}
	// cosign writes the blob "{}" with the empty media type and, oddly, an
	// artifactType inside the config descriptor as well.
	if m.Config.MediaType != emptyMediaType || m.Config.Size != 2 || m.Config.ArtifactType != bundleMediaType {
		t.Errorf("referrer config = %s, want the empty descriptor %q with artifactType %q", js(m.Config), emptyMediaType, bundleMediaType)
	}
	if m.Subject == nil || m.Subject.Digest != imageDesc.Digest || m.Subject.MediaType != imageDesc.MediaType || m.Subject.Size != imageDesc.Size {
		t.Errorf("referrer subject = %s, want %s %s %d", js(m.Subject), imageDesc.MediaType, imageDesc.Digest, imageDesc.Size)
	}
	if l := m.Layers[0]; l.MediaType != bundleMediaType {
		t.Errorf("referrer layer media type = %q, want %q", l.MediaType, bundleMediaType)
	}
	wantAnn := map[string]string{"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": predicateType}
	for k, v := range wantAnn {
		if m.Annotations[k] != v {
			t.Errorf("referrer manifest annotation %s = %q, want %q (all: %v)", k, m.Annotations[k], v, m.Annotations)
		}
	}
	if _, err := time.Parse(time.RFC3339, m.Annotations["org.opencontainers.image.created"]); err != nil {
		t.Errorf("referrer manifest annotation org.opencontainers.image.created: %v", err)
	}

	var b struct {
		MediaType            string `json:"mediaType"`
		VerificationMaterial struct {
			PublicKey *struct {
				Hint string `json:"hint"`
			} `json:"publicKey"`
			Certificate               json.RawMessage `json:"certificate"`
			X509CertificateChain      json.RawMessage `json:"x509CertificateChain"`
			TlogEntries               []any           `json:"tlogEntries"`
			TimestampVerificationData *struct {
				RFC3161Timestamps []any `json:"rfc3161Timestamps"`
			} `json:"timestampVerificationData"`
		} `json:"verificationMaterial"`
		DSSEEnvelope     *envelope       `json:"dsseEnvelope"`
		MessageSignature json.RawMessage `json:"messageSignature"`
	}
	if err := json.Unmarshal(blob, &b); err != nil {
		t.Fatalf("bundle is not JSON: %v\n%s", err, blob)
	}
	if b.MediaType != bundleMediaType {
		t.Errorf("bundle mediaType = %q, want %q", b.MediaType, bundleMediaType)
	}
	vm := b.VerificationMaterial
	if vm.PublicKey == nil || vm.PublicKey.Hint != e.k.Hint(t) {
		t.Errorf("bundle verificationMaterial.publicKey = %s, want hint %s", js(vm.PublicKey), e.k.Hint(t))
	}
	if vm.Certificate != nil || vm.X509CertificateChain != nil || len(vm.TlogEntries) != 0 ||
		(vm.TimestampVerificationData != nil && len(vm.TimestampVerificationData.RFC3161Timestamps) != 0) {
		t.Errorf("key-signed bundle has certificate, tlog entries or timestamps: %s", blob)
	}
	if b.DSSEEnvelope == nil || b.MessageSignature != nil {
		t.Fatalf("bundle content is not a DSSE envelope: %s", blob)
	}
	st := e.checkEnvelope(t, *b.DSSEEnvelope, image.DigestStr())
	if st.PredicateType != predicateType {
		t.Errorf("statement predicateType = %q, want %q", st.PredicateType, predicateType)
	}
	return st
}

// checkLegacySig asserts the sha256-<hex>.sig tag of image: one simple
// signing layer about image, signed by e.k.
func (e *env) checkLegacySig(t *testing.T, image name.Digest) {
	t.Helper()
	tag := tagFor(image, ".sig")
	m, payload := singleLayer(t, image.Context().Tag(tag))
	if m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("%s config media type = %q, want %q", tag, m.Config.MediaType, types.OCIConfigJSON)
	}
	l := m.Layers[0]
	if l.MediaType != simpleSigningType {
		t.Errorf("%s layer media type = %q, want %q", tag, l.MediaType, simpleSigningType)
	}
	if len(l.Annotations) != 1 {
		t.Errorf("%s layer annotations = %v, want only %s", tag, l.Annotations, signatureAnnotation)
	}
	sig, err := base64.StdEncoding.DecodeString(l.Annotations[signatureAnnotation])
	if err != nil || len(sig) == 0 {
		t.Fatalf("%s annotation %s = %q: not a base64 signature (%v)", tag, signatureAnnotation, l.Annotations[signatureAnnotation], err)
	}
	checkSignature(t, e.k, payload, sig)
	if checkSignatureErr(e.other, payload, sig) == nil {
		t.Errorf("%s signature verifies with another key", tag)
	}

	var p struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			} `json:"identity"`
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
		Optional map[string]any `json:"optional"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatalf("%s payload: %v\n%s", tag, err, payload)
	}
	if got := p.Critical.Image.DockerManifestDigest; got != image.DigestStr() {
		t.Errorf("%s payload critical.image.docker-manifest-digest = %q, want %q", tag, got, image.DigestStr())
	}
	if p.Critical.Type != simpleSigningTypeVal {
		t.Errorf("%s payload critical.type = %q, want %q", tag, p.Critical.Type, simpleSigningTypeVal)
	}
	if got, want := p.Critical.Identity.DockerReference, image.Context().Name(); got != want {
		t.Errorf("%s payload critical.identity.docker-reference = %q, want %q", tag, got, want)
	}
}

type envelope struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   string `json:"sig"`
	} `json:"signatures"`
}

type statement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// checkEnvelope checks a DSSE envelope signed by e.k over an in-toto
// statement with the single subject digest, and returns the statement.
func (e *env) checkEnvelope(t *testing.T, env envelope, digest string) statement {
	t.Helper()
	if env.PayloadType != inTotoPayloadType {
		t.Errorf("DSSE payloadType = %q, want %q", env.PayloadType, inTotoPayloadType)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatalf("DSSE payload: %v", err)
	}
	if len(env.Signatures) != 1 {
		t.Fatalf("DSSE envelope has %d signatures, want 1", len(env.Signatures))
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		t.Fatalf("DSSE signature: %v", err)
	}
	pae := fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(env.PayloadType), env.PayloadType, len(payload), payload)
	checkSignature(t, e.k, pae, sig)
	if checkSignatureErr(e.other, pae, sig) == nil {
		t.Errorf("DSSE signature verifies with another key")
	}

	var st statement
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatalf("DSSE payload is not an in-toto statement: %v\n%s", err, payload)
	}
	alg, hex, _ := strings.Cut(digest, ":")
	if len(st.Subject) != 1 || !reflect.DeepEqual(st.Subject[0].Digest, map[string]string{alg: hex}) {
		t.Errorf("statement subject = %s, want one with digest %s", js(st.Subject), digest)
	}
	return st
}

func checkSignature(t *testing.T, k signaturetest.KeyPair, msg, sig []byte) {
	t.Helper()
	if err := checkSignatureErr(k, msg, sig); err != nil {
		t.Errorf("signature does not verify with %s: %v", k.PublicKey, err)
	}
}

// checkSignatureErr verifies an ASN.1 ECDSA signature over SHA-256(msg), as
// cosign makes them with its default P-256 keys.
func checkSignatureErr(k signaturetest.KeyPair, msg, sig []byte) error {
	pemBytes, err := os.ReadFile(k.PublicKey)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return fmt.Errorf("no PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return err
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("public key is %T, want ECDSA", pub)
	}
	sum := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(ec, sum[:], sig) {
		return fmt.Errorf("ECDSA signature invalid")
	}
	return nil
}

// checkNoReferrers asserts that nothing refers to image.
func (e *env) checkNoReferrers(t *testing.T, image name.Digest) {
	t.Helper()
	idx, err := remote.Referrers(image)
	if err != nil {
		t.Fatalf("referrers of %s: %v", image, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 0 {
		t.Errorf("referrers of %s = %s, want none", image, js(im))
	}
}

// fallbackTags is the sha256-<hex> tag cosign writes for a referrer on a
// registry without the referrers API, and nothing on one with it.
func (e *env) fallbackTags(image name.Digest) []string {
	if e.referrersAPI {
		return nil
	}
	return []string{tagFor(image, "")}
}

// checkTags asserts the repository's tags are exactly want (images are
// pushed by digest, so every tag is cosign's).
func (e *env) checkTags(t *testing.T, image name.Digest, want []string) {
	t.Helper()
	got, err := remote.List(image.Context())
	if err != nil {
		t.Fatalf("list tags of %s: %v", image.Context(), err)
	}
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("tags of %s = %q, want %q", image.Context(), got, want)
	}
}

// tagFor is cosign's tag for image: sha256-<hex><suffix>.
func tagFor(image name.Digest, suffix string) string {
	return strings.Replace(image.DigestStr(), ":", "-", 1) + suffix
}

// singleLayer fetches an image manifest that must have exactly one layer and
// returns it with the layer's bytes (verified against its digest).
func singleLayer(t *testing.T, ref name.Reference) (*v1.Manifest, []byte) {
	t.Helper()
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("get %s: %v", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || len(m.Layers) != 1 {
		t.Fatalf("%s = %s, want an OCI image manifest with one layer", ref, js(m))
	}
	l, err := img.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed() // the blob as stored: cosign's layers are not compressed
	if err != nil {
		t.Fatalf("fetch layer of %s: %v", ref, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("fetch layer of %s: %v", ref, err)
	}
	if h, _, _ := v1.SHA256(bytes.NewReader(b)); h != m.Layers[0].Digest {
		t.Fatalf("layer of %s has digest %s, want %s", ref, h, m.Layers[0].Digest)
	}
	return m, b
}

func descriptor(t *testing.T, ref name.Digest) v1.Descriptor {
	t.Helper()
	d, err := remote.Head(ref)
	if err != nil {
		t.Fatalf("head %s: %v", ref, err)
	}
	return *d
}

// referrersAPI reports whether the registry of image serves
// GET /v2/<name>/referrers/<digest>.
func referrersAPI(t *testing.T, image name.Digest) bool {
	t.Helper()
	resp, err := http.Get("http://" + image.RegistryStr() + "/v2/" + image.RepositoryStr() + "/referrers/" + image.DigestStr())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == string(types.OCIImageIndex)
}

func digestRef(t *testing.T, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func jsonEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
