package gatekeeper_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/open-policy-agent/frameworks/constraint/pkg/apis/externaldata/unversioned"
	edv1beta1 "github.com/open-policy-agent/frameworks/constraint/pkg/apis/externaldata/v1beta1"
	templatesv1 "github.com/open-policy-agent/frameworks/constraint/pkg/apis/templates/v1"
	constraintclient "github.com/open-policy-agent/frameworks/constraint/pkg/client"
	"github.com/open-policy-agent/frameworks/constraint/pkg/client/drivers/rego"
	"github.com/open-policy-agent/frameworks/constraint/pkg/client/reviews"
	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"
	"github.com/open-policy-agent/frameworks/constraint/pkg/types"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/yaml"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
	"github.com/imagegate/imagegate/server/certs"
	"github.com/imagegate/imagegate/server/config"
	"github.com/imagegate/imagegate/server/servertest"
)

// Gatekeeper's names for its enforcement points (pkg/util in Gatekeeper).
const (
	webhookEnforcementPoint = "validation.gatekeeper.sh"
	auditEnforcementPoint   = "audit.gatekeeper.sh"
)

// The keyless identities of the test Sigstore: the release workflow signs
// and attests; the dev workflow's provenance names another builder.
var (
	releaseIdentity = signaturetest.Identity{
		Issuer:  "https://token.actions.githubusercontent.com",
		Subject: "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0",
		Extensions: map[string]string{
			"githubWorkflowRepository": "acme/app",
			"sourceRepositoryURI":      "https://github.com/acme/app",
		},
	}
	releaseBuilder = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0"
	devBuilder     = "https://github.com/acme/app/.github/workflows/dev.yml@refs/heads/main"
)

const (
	cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"
	slsaProvenance      = "https://slsa.dev/provenance/v1"
)

// world is a real registry holding real images, a test Sigstore that signed
// some of them, and the sample placeholders that stand for them.
type world struct {
	reg       *registrytest.Registry
	rootPath  string            // the test Sigstore's trusted_root.json
	values    map[string]string // placeholder → value
	replacer  *strings.Replacer
	createdAt time.Time
}

// newWorld pushes the images the samples use:
//
//	acme/signed:1.0     new, keyless-signed and SLSA-attested by the release workflow
//	acme/devbuild:1.0   new, signed, attested with a dev-workflow builder id
//	acme/unsigned:1.0   new, no signature
//	acme/old:1.0        created 2020-01-01
//	acme/multiarch:1.0  index linux/amd64 + linux/arm64, signed on the index only
//	acme/moved:1.0      pushed twice: the tag moved to a second image
//	acme/missing        nothing
func newWorld(t *testing.T) *world {
	t.Helper()
	reg := registrytest.New(t)
	ss := signaturetest.NewSigstore(t)
	w := &world{
		reg:       reg,
		rootPath:  ss.WriteTrustedRoot(t, t.TempDir()),
		createdAt: time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Second),
	}
	recent := registrytest.Image{Created: w.createdAt}

	signed := reg.PushImage(t, "acme/signed", "1.0", recent)
	w.sign(t, ss, "acme/signed", signed, releaseBuilder)
	devbuild := reg.PushImage(t, "acme/devbuild", "1.0", recent)
	w.sign(t, ss, "acme/devbuild", devbuild, devBuilder)
	unsigned := reg.PushImage(t, "acme/unsigned", "1.0", recent)
	old := reg.PushImage(t, "acme/old", "1.0", registrytest.Image{Created: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
	multi, _ := reg.PushIndex(t, "acme/multiarch", "1.0",
		registrytest.Image{Created: w.createdAt, Arch: "amd64"},
		registrytest.Image{Created: w.createdAt, Arch: "arm64"})
	desc := w.descriptor(t, "acme/multiarch", multi)
	signaturetest.AttachReferrer(t, reg.Host, "acme/multiarch", desc, ss.SignImage(t, releaseIdentity, multi.String(), cosignSignPredicate, nil, signaturetest.BundleOptions{}), cosignSignPredicate)
	movedOld := reg.PushImage(t, "acme/moved", "1.0", recent)
	movedNew := reg.PushImage(t, "acme/moved", "1.0", registrytest.Image{Created: time.Now().UTC().Truncate(time.Second)})

	w.values = map[string]string{
		"REGISTRY":         reg.Host,
		"DIGEST_SIGNED":    signed.String(),
		"DIGEST_DEVBUILD":  devbuild.String(),
		"DIGEST_UNSIGNED":  unsigned.String(),
		"DIGEST_OLD":       old.String(),
		"DIGEST_MULTIARCH": multi.String(),
		"DIGEST_MOVED_OLD": movedOld.String(),
		"DIGEST_MOVED_NEW": movedNew.String(),
	}
	var pairs []string
	for k, v := range w.values {
		pairs = append(pairs, k, v)
	}
	w.replacer = strings.NewReplacer(pairs...)
	return w
}

// sign attaches a keyless signature and an SLSA provenance attestation naming
// builder, both by the release identity, as cosign v3 does (referrers).
func (w *world) sign(t *testing.T, ss *signaturetest.Sigstore, repo string, d v1.Hash, builder string) {
	t.Helper()
	desc := w.descriptor(t, repo, d)
	signaturetest.AttachReferrer(t, w.reg.Host, repo, desc, ss.SignImage(t, releaseIdentity, d.String(), cosignSignPredicate, nil, signaturetest.BundleOptions{}), cosignSignPredicate)
	predicate := fmt.Sprintf(`{"buildDefinition":{"buildType":"https://example.test/build"},"runDetails":{"builder":{"id":%q}}}`, builder)
	signaturetest.AttachReferrer(t, w.reg.Host, repo, desc, ss.SignImage(t, releaseIdentity, d.String(), slsaProvenance, []byte(predicate), signaturetest.BundleOptions{}), slsaProvenance)
}

func (w *world) descriptor(t *testing.T, repo string, d v1.Hash) v1.Descriptor {
	t.Helper()
	ref, err := name.NewDigest(w.reg.Host+"/"+repo+"@"+d.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	return v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}
}

// image is a sample image string with the placeholders filled in.
func (w *world) image(s string) string { return w.replacer.Replace(s) }

// imagegate is a real imagegate HTTPS server (server.Run, as `imagegate
// serve` runs it) for w's registry, with mTLS on: callers need the bundle's
// client certificate.
type imagegate struct {
	addr   string
	bundle *certs.Bundle
}

// startImagegate runs a server; edit adjusts its config.
func startImagegate(t *testing.T, w *world, edit func(*config.Config)) *imagegate {
	t.Helper()
	b, err := certs.Generate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile = b.CertFile, b.KeyFile, b.CAFile
	cfg.Registries.Allow = []string{w.reg.Host}
	cfg.Registries.Insecure = []string{w.reg.Host}
	cfg.Registries.Private = []string{w.reg.Host}
	cfg.Trust.TrustedRoots = map[string]string{"test": w.rootPath}
	cfg.Digest.KeepTag = true
	if edit != nil {
		edit(cfg)
	}
	addr := servertest.Start(t, cfg, nil)
	return &imagegate{addr: addr, bundle: b}
}

// provider reads gatekeeper/providers/<name>.yaml as Gatekeeper's Provider
// controller does and points it at ig: same path and timeout, ig's address
// and CA as caBundle.
func (ig *imagegate) provider(t *testing.T, name string) *unversioned.Provider {
	t.Helper()
	p := readProvider(t, name)
	u, err := url.Parse(p.Spec.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = ig.addr
	p.Spec.URL = u.String()
	p.Spec.CABundle = base64.StdEncoding.EncodeToString(ig.bundle.CAPEM)
	return p
}

// readProvider decodes a Provider manifest strictly into the frameworks
// v1beta1 type and converts it to the unversioned one the caches hold.
func readProvider(t *testing.T, name string) *unversioned.Provider {
	t.Helper()
	var v edv1beta1.Provider
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join("providers", name+".yaml")), &v); err != nil {
		t.Fatalf("providers/%s.yaml: %v", name, err)
	}
	var p unversioned.Provider
	if err := edv1beta1.Convert_v1beta1_Provider_To_unversioned_Provider(&v, &p, nil); err != nil {
		t.Fatal(err)
	}
	return &p
}

// closedURL is an https URL on 127.0.0.1 where nothing listens.
func closedURL(t *testing.T, path string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "https://" + addr + path
}

// gatekeeperOptions configures newGatekeeper.
type gatekeeperOptions struct {
	providers []*unversioned.Provider
	// clientCert, when set, is presented to providers (Gatekeeper presents
	// its webhook certificate): rego.EnableExternalDataClientAuth with a
	// controller-runtime certwatcher, as Gatekeeper's main.go sets it up.
	clientCert *certs.Bundle
}

// newGatekeeper builds the constraint client as Gatekeeper's main.go does
// with external data on: the rego driver with a provider cache, a provider
// response cache (3 min, Gatekeeper's default TTL), client-cert auth,
// http.send disabled (Gatekeeper's default --disable-opa-builtin) and no
// referential data; the target is this package's copy of Gatekeeper's
// admission.k8s.gatekeeper.sh target (k8starget_test.go).
//
// The rego driver registers external_data globally (rego.RegisterBuiltin1):
// the last driver built serves every evaluation, so tests build one at a
// time and use it before building the next; none runs in parallel.
func newGatekeeper(t *testing.T, o gatekeeperOptions) (*constraintclient.Client, *externaldata.ProviderCache) {
	t.Helper()
	pc := externaldata.NewCache()
	for _, p := range o.providers {
		if err := pc.Upsert(p); err != nil {
			t.Fatalf("provider cache: Upsert(%s): %v", p.Name, err)
		}
	}
	args := []rego.Arg{
		rego.Tracing(false),
		rego.DisableBuiltins("http.send"),
		rego.AddExternalDataProviderCache(pc),
		rego.AddExternalDataProviderResponseCache(externaldata.NewProviderResponseCache(t.Context(), 3*time.Minute)),
		rego.Externs(),
	}
	if o.clientCert != nil {
		cw, err := certwatcher.New(o.clientCert.ClientCertFile, o.clientCert.ClientKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, rego.EnableExternalDataClientAuth(), rego.AddExternalDataClientCertWatcher(cw))
	}
	driver, err := rego.New(args...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := constraintclient.NewClient(
		constraintclient.Targets(&k8sTarget{}),
		constraintclient.Driver(driver),
		constraintclient.EnforcementPoints(webhookEnforcementPoint, auditEnforcementPoint),
	)
	if err != nil {
		t.Fatal(err)
	}
	return c, pc
}

// addTemplate loads gatekeeper/library/<rule>/template.yaml: strict decoding
// into the frameworks v1 type, then ToVersionless (defaults and conversion),
// as Gatekeeper's template controller and gator do.
func addTemplate(t *testing.T, c *constraintclient.Client, rule string) {
	t.Helper()
	var v templatesv1.ConstraintTemplate
	path := filepath.Join("library", rule, "template.yaml")
	if err := yaml.UnmarshalStrict(readFile(t, path), &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ct, err := v.ToVersionless()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if _, err := c.AddTemplate(t.Context(), ct); err != nil {
		t.Fatalf("%s: AddTemplate: %v", path, err)
	}
}

// object reads a YAML object, filling in the sample placeholders.
func (w *world) object(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	return w.objectFrom(t, path, readFile(t, path))
}

func (w *world) objectFrom(t *testing.T, what string, b []byte) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(w.replacer.Replace(string(b))), &u.Object); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if strings.Contains(w.replacer.Replace(string(b)), "DIGEST_") {
		t.Fatalf("%s: unknown DIGEST_ placeholder", what)
	}
	return u
}

// review runs obj through the client as Gatekeeper's validating webhook does
// and returns the violations.
func review(t *testing.T, c *constraintclient.Client, obj *unstructured.Unstructured) []*types.Result {
	t.Helper()
	resp, err := c.Review(t.Context(), obj, reviews.EnforcementPoint(webhookEnforcementPoint))
	if err != nil {
		t.Fatalf("Review: %v", err)
	}
	return resp.Results()
}

func messages(results []*types.Result) []string {
	var out []string
	for _, r := range results {
		out = append(out, r.Msg)
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// splitYAML splits a multi-document YAML file.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(b, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
