// Package examples_test proves that every example under examples/ runs as its
// README documents: each imagegate config parses, and each migrated policy
// decides the way the original system did, against a real in-process
// registry (registrytest) with real signatures (signaturetest), through the
// same server.NewLookup, server.NewPolicy and server.Evaluate that
// `imagegate eval` uses.
package examples_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/yaml"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
	"github.com/imagegate/imagegate/rego"
	"github.com/imagegate/imagegate/server"
	"github.com/imagegate/imagegate/server/config"
)

// TestMain runs the tests from the repository root: example configs name
// their files (policy.dir, trust.trustedRoots) relative to it, as the
// READMEs' `imagegate eval` commands are run from there.
func TestMain(m *testing.M) {
	if err := os.Chdir(".."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, err := os.Stat("go.mod"); err != nil {
		fmt.Fprintln(os.Stderr, "examples tests must run from the examples directory of the repository:", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// deployPath matches the absolute paths deployment configs point at
// (mounted secrets and certificates), which do not exist on a dev machine.
var deployPath = regexp.MustCompile(`/etc/imagegate/[^\s"',}\]]+`)

// TestConfigsParse: every imagegate config under examples/ is accepted by
// config.Parse. Kubernetes objects (apiVersion and kind: the kubeconfig and
// AdmissionConfiguration) are not imagegate configs and are only checked to
// be YAML. Paths under /etc/imagegate/ are replaced by empty files of the
// same name, as a cluster would mount them.
func TestConfigsParse(t *testing.T) {
	expected := map[string]bool{
		"examples/config/dev.yaml":                           false,
		"examples/config/imagegate.yaml":                     false,
		"examples/image-enforcer/config.yaml":                false,
		"examples/imagepolicywebhook/imagegate.yaml":         false,
		"examples/policy-controller-max-age/imagegate.yaml":  false,
		"examples/kyverno-chainguard-keyless/imagegate.yaml": false,
	}
	err := filepath.WalkDir("examples", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return err
		}
		path = filepath.ToSlash(path)
		t.Run(strings.TrimPrefix(path, "examples/"), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var top map[string]any
			if err := yaml.Unmarshal(b, &top); err != nil {
				t.Fatalf("%s is not YAML: %v", path, err)
			}
			if top["apiVersion"] != nil && top["kind"] != nil {
				t.Logf("%s is a Kubernetes %v, not an imagegate config", path, top["kind"])
				return
			}
			if _, err := config.Parse(withDeployFiles(t, b)); err != nil {
				t.Errorf("config.Parse(%s) = %v", path, err)
			}
			if _, ok := expected[path]; ok {
				expected[path] = true
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, seen := range expected {
		if !seen {
			t.Errorf("%s was not parsed as an imagegate config", path)
		}
	}
}

// withDeployFiles rewrites /etc/imagegate/… paths to empty files under a
// temporary directory.
func withDeployFiles(t *testing.T, b []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	return deployPath.ReplaceAllFunc(b, func(p []byte) []byte {
		local := filepath.Join(dir, filepath.FromSlash(string(p)))
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return []byte(filepath.ToSlash(local))
	})
}

// loadExample reads an example config, applies the replacements (old, new,
// …: the registry host, a key path) to its text and parses it.
func loadExample(t *testing.T, path string, replace ...string) *config.Config {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(text, replace[i]) {
			t.Fatalf("%s does not contain %q; the test's substitutions are out of date", path, replace[i])
		}
	}
	cfg, err := config.Parse([]byte(strings.NewReplacer(replace...).Replace(text)))
	if err != nil {
		t.Fatalf("config.Parse(%s) = %v", path, err)
	}
	return cfg
}

// reachLocal lets the facts lookup reach the in-process registry, which
// serves plain HTTP on 127.0.0.1.
func reachLocal(cfg *config.Config, reg *registrytest.Registry) {
	cfg.Registries.Insecure = []string{reg.Host}
	cfg.Registries.Private = []string{reg.Host}
}

// gate is what `imagegate eval` builds from a config: facts lookup and policy.
type gate struct {
	lookup rego.Facts
	policy *rego.Engine
}

func newGate(t *testing.T, cfg *config.Config) *gate {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	lk, err := server.NewLookup(cfg, nil, 1)
	if err != nil {
		t.Fatalf("server.NewLookup() = %v", err)
	}
	p, err := server.NewPolicy(t.Context(), cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("server.NewPolicy() = %v", err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return &gate{lookup: lk, policy: p}
}

// decide evaluates an ImageReview document as imagegate eval -f does.
func (g *gate) decide(t *testing.T, body []byte) server.Decision {
	t.Helper()
	_, input, err := server.DecodeImageReview(body)
	if err != nil {
		t.Fatalf("DecodeImageReview: %v\n%s", err, body)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	d, err := server.Evaluate(ctx, g.policy, input, g.lookup)
	if err != nil {
		t.Fatalf("server.Evaluate() = %v", err)
	}
	t.Logf("decision: %+v", d)
	return d
}

// review is the ImageReview `imagegate eval --image … --namespace …` builds.
func review(namespace string, annotations map[string]string, images ...string) []byte {
	var cs []map[string]string
	for _, i := range images {
		cs = append(cs, map[string]string{"image": i})
	}
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview",
		"spec": map[string]any{"containers": cs, "annotations": annotations, "namespace": namespace},
	})
	return b
}

// readReview reads an example ImageReview file, replacing its registry host.
func readReview(t *testing.T, path, oldHost, newHost string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), oldHost) {
		t.Fatalf("%s does not mention %s", path, oldHost)
	}
	return []byte(strings.ReplaceAll(string(b), oldHost, newHost))
}

type want struct {
	allowed bool
	reason  []string          // substrings of the reason
	not     []string          // must not appear in the reason
	audit   map[string]string // auditAnnotations that must be present; "*" any value
	noAudit bool              // auditAnnotations must be empty
}

func (w want) check(t *testing.T, d server.Decision) {
	t.Helper()
	if d.Allowed != w.allowed {
		t.Errorf("allowed = %v, want %v (reason %q)", d.Allowed, w.allowed, d.Reason)
	}
	for _, s := range w.reason {
		if !strings.Contains(d.Reason, s) {
			t.Errorf("reason = %q\nwant it to contain %q", d.Reason, s)
		}
	}
	for _, s := range w.not {
		if strings.Contains(d.Reason, s) {
			t.Errorf("reason = %q\nwant it not to contain %q", d.Reason, s)
		}
	}
	for k, v := range w.audit {
		got, ok := d.AuditAnnotations[k]
		if !ok || (v != "*" && got != v) {
			t.Errorf("auditAnnotations[%q] = %q, want %q (all: %v)", k, got, v, d.AuditAnnotations)
		}
	}
	if w.noAudit && len(d.AuditAnnotations) != 0 {
		t.Errorf("auditAnnotations = %v, want none", d.AuditAnnotations)
	}
}

// TestImageEnforcer: the OPA image_enforcer-style v0 policy runs unmodified
// with examples/image-enforcer/config.yaml, as its README shows.
func TestImageEnforcer(t *testing.T) {
	cfg, err := config.Load("examples/image-enforcer/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := newGate(t, cfg)
	for _, tc := range []struct {
		file string
		want want
	}{
		{file: "allowed.json", want: want{allowed: true, noAudit: true}},
		{file: "denied.json", want: want{
			reason: []string{"image library/wordpress:4-apache is not from a trusted repository"},
			not:    []string{"openpolicyagent/opa"},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("examples/image-enforcer", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			d := g.decide(t, b)
			tc.want.check(t, d)
			if !tc.want.allowed && d.Reason != "image library/wordpress:4-apache is not from a trusted repository" {
				t.Errorf("reason = %q, want exactly the one violation", d.Reason)
			}
		})
	}
}

// TestPolicyControllerMaxAge: maxAgeDays 30 admits an image built 10 days ago
// and denies one built 40 days ago, a multi-arch image with one stale
// platform, and a reproducible build stamped 1970-01-01.
func TestPolicyControllerMaxAge(t *testing.T) {
	reg := registrytest.New(t)
	day := 24 * time.Hour
	now := time.Now()
	fresh := reg.PushImage(t, "team/app", "1.0.0", registrytest.Image{Created: now.Add(-10 * day)})
	stale := reg.PushImage(t, "team/app", "0.9.0", registrytest.Image{Created: now.Add(-40 * day)})
	epoch := reg.PushImage(t, "team/ko-app", "1.0.0", registrytest.Image{Created: time.Unix(0, 0).UTC()})
	multi, _ := reg.PushIndex(t, "team/multi", "2.0.0",
		registrytest.Image{Created: now.Add(-10 * day), Arch: "amd64"},
		registrytest.Image{Created: now.Add(-40 * day), Arch: "arm64"})

	cfg := loadExample(t, "examples/policy-controller-max-age/imagegate.yaml")
	if got := cfg.Policy.Params["rules"].(map[string]any)["age"]; fmt.Sprint(got) != "map[maxAgeDays:30 reproducibleBuilds:deny]" {
		t.Fatalf("example age params = %v, want maxAgeDays 30, reproducibleBuilds deny", got)
	}
	cfg.Registries.Allow = []string{reg.Host}
	reachLocal(cfg, reg)
	g := newGate(t, cfg)

	ref := func(repo, tag string, d v1.Hash) string { return reg.Host + "/" + repo + ":" + tag + "@" + d.String() }
	for _, tc := range []struct {
		desc, image string
		want        want
	}{
		{desc: "built 10 days ago", image: ref("team/app", "1.0.0", fresh), want: want{allowed: true, noAudit: true}},
		{desc: "built 40 days ago", image: ref("team/app", "0.9.0", stale), want: want{reason: []string{
			`age: image "` + ref("team/app", "0.9.0", stale) + `" was created `,
			"40 days ago, more than maxAgeDays 30",
		}}},
		{desc: "multi-arch, one platform stale", image: ref("team/multi", "2.0.0", multi), want: want{
			reason: []string{`age: image "` + ref("team/multi", "2.0.0", multi) + `" platform linux/arm64 was created`, "more than maxAgeDays 30"},
			not:    []string{"linux/amd64"},
		}},
		{desc: "reproducible build", image: ref("team/ko-app", "1.0.0", epoch), want: want{reason: []string{
			`age: image "` + ref("team/ko-app", "1.0.0", epoch) + `" has creation time 1970-01-01T00:00:00Z, the fixed timestamp of a reproducible build`,
			`set reproducibleBuilds to "allow"`,
		}}},
		{desc: "tag without digest", image: reg.Host + "/team/app:1.0.0", want: want{reason: []string{
			`pinning: image "` + reg.Host + `/team/app:1.0.0" is not pinned to a digest`,
		}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			tc.want.check(t, g.decide(t, review("default", nil, tc.image)))
		})
	}
	t.Run("kube-system exempt", func(t *testing.T) {
		want{allowed: true, audit: map[string]string{"mode": "exempt"}}.check(t, g.decide(t, review("kube-system", nil, ref("team/app", "0.9.0", stale))))
	})

	// reproducibleBuilds: allow is the documented alternative.
	t.Run("reproducibleBuilds allow", func(t *testing.T) {
		cfg := loadExample(t, "examples/policy-controller-max-age/imagegate.yaml", "reproducibleBuilds: deny", "reproducibleBuilds: allow")
		cfg.Registries.Allow = []string{reg.Host}
		reachLocal(cfg, reg)
		g := newGate(t, cfg)
		want{allowed: true}.check(t, g.decide(t, review("default", nil, ref("team/ko-app", "1.0.0", epoch))))
		want{reason: []string{"40 days ago"}}.check(t, g.decide(t, review("default", nil, ref("team/app", "0.9.0", stale))))
	})
}

// Chainguard's release workflow identity, as Fulcio certifies it.
const (
	githubIssuer     = "https://token.actions.githubusercontent.com"
	chainguardSigner = "https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main"
)

// TestKyvernoChainguardKeyless: the example's signer admits an image signed
// by Chainguard's release workflow and denies one signed by another workflow
// (naming the signer it found) and an unsigned one. The test Sigstore stands
// in for public good (which cannot sign offline): only the trusted root path
// and the registry host ("cgr.dev") differ from the example.
func TestKyvernoChainguardKeyless(t *testing.T) {
	reg := registrytest.New(t)
	ss := signaturetest.NewSigstore(t)
	rootFile := ss.WriteTrustedRoot(t, t.TempDir())

	push := func(repo string, signer string) string {
		t.Helper()
		d := reg.PushImage(t, repo, "latest", registrytest.Image{Created: time.Now()})
		if signer != "" {
			id := signaturetest.Identity{Issuer: githubIssuer, Subject: signer, Extensions: map[string]string{
				"githubWorkflowRepository": strings.TrimPrefix(strings.Split(signer, "/.github/")[0], "https://github.com/"),
			}}
			b := ss.SignImage(t, id, d.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{})
			signaturetest.AttachReferrer(t, reg.Host, repo, descriptor(t, reg.Host+"/"+repo+"@"+d.String()), b, signature.CosignSignPredicate)
		}
		return reg.Host + "/" + repo + ":latest@" + d.String()
	}
	otherWorkflow := "https://github.com/chainguard-images/images/.github/workflows/build.yaml@refs/heads/main"
	forkWorkflow := "https://github.com/someone/images/.github/workflows/release.yaml@refs/heads/main"
	branch := "https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main-test"
	signed := push("chainguard/static", chainguardSigner)
	byOther := push("chainguard/nginx", otherWorkflow)
	byFork := push("chainguard/busybox", forkWorkflow)
	byBranch := push("chainguard/git", branch)
	unsigned := push("chainguard/python", "")
	notChainguard := push("acme/app", chainguardSigner)

	cfg := loadExample(t, "examples/kyverno-chainguard-keyless/imagegate.yaml", "cgr.dev", reg.Host)
	if _, ok := cfg.Trust.TrustedRoots["public-good"]; !ok {
		t.Fatalf("example trust.trustedRoots = %v, want public-good", cfg.Trust.TrustedRoots)
	}
	cfg.Trust.TrustedRoots["public-good"] = rootFile
	reachLocal(cfg, reg)
	g := newGate(t, cfg)

	notSigned := func(image string) string {
		return `signature: image "` + image + `" is not signed by any of the required signers (issuer "` + githubIssuer + `" subject matching`
	}
	found := func(subject string) string {
		return `verified signatures: keyless issuer "` + githubIssuer + `" subject "` + subject + `"`
	}
	for _, tc := range []struct {
		desc, namespace, image string
		want                   want
	}{
		{desc: "signed by the release workflow", image: signed, want: want{allowed: true, noAudit: true}},
		{desc: "signed by another workflow", image: byOther, want: want{reason: []string{notSigned(byOther), found(otherWorkflow)}}},
		{desc: "signed by a fork's release workflow", image: byFork, want: want{reason: []string{notSigned(byFork), found(forkWorkflow)}}},
		{desc: "signed on another branch (the regexp is anchored)", image: byBranch, want: want{reason: []string{notSigned(byBranch), found(branch)}}},
		{desc: "unsigned", image: unsigned, want: want{reason: []string{notSigned(unsigned), "verified signatures: none"}}},
		{desc: "not a Chainguard repository", image: notChainguard, want: want{
			reason: []string{`registry: image "` + notChainguard + `" is from "` + reg.Host + `/acme/app", which is not allowed`},
			not:    []string{"signature:"},
		}},
		{desc: "tag without digest", image: reg.Host + "/chainguard/static:latest", want: want{reason: []string{"is not pinned to a digest"}}},
		{desc: "kube-system exempt", namespace: "kube-system", image: unsigned, want: want{allowed: true, audit: map[string]string{"mode": "exempt"}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ns := tc.namespace
			if ns == "" {
				ns = "default"
			}
			tc.want.check(t, g.decide(t, review(ns, nil, tc.image)))
		})
	}
}

// TestAuditDevEnforceProd: examples/imagepolicywebhook/imagegate.yaml with
// the ImageReviews of examples/audit-dev-enforce-prod. The violating image
// (a tag without digest, unsigned) is admitted and recorded in dev-*,
// denied in prod-*, admitted by break-glass in prod-* and never checked in
// kube-system; a signed, pinned image is admitted in prod-*. Only the
// corporate registry host and the release key's path differ from the
// example.
func TestAuditDevEnforceProd(t *testing.T) {
	const corp = "registry.corp.example:5000"
	reg := registrytest.New(t)
	reg.PushImage(t, "payments/api", "1.4.2", registrytest.Image{Created: time.Now()})
	good := reg.PushImage(t, "payments/api", "1.5.0", registrytest.Image{Created: time.Now()})
	ss := signaturetest.NewSigstore(t)
	key := signaturetest.NewSigningKey(t)
	keyFile := key.WritePublicKey(t, t.TempDir())
	b := ss.SignImageWithKey(t, key, good.String(), signature.CosignSignPredicate, nil, signaturetest.BundleOptions{NoTlog: true, NoTimestamp: true})
	signaturetest.AttachReferrer(t, reg.Host, "payments/api", descriptor(t, reg.Host+"/payments/api@"+good.String()), b, signature.CosignSignPredicate)

	cfg := loadExample(t, "examples/imagepolicywebhook/imagegate.yaml", corp, reg.Host, "/etc/imagegate/keys/release.pub", keyFile)
	reachLocal(cfg, reg)
	g := newGate(t, cfg)

	violating := reg.Host + "/payments/api:1.4.2"
	pinning := `pinning: image "` + violating + `" is not pinned to a digest`
	unsigned := `signature: image "` + violating + `" is not signed by any of the required signers (key "release")`
	dir := "examples/audit-dev-enforce-prod"
	for _, tc := range []struct {
		file string
		want want
	}{
		// First, so no cached facts hide a registry request.
		{file: "kube-system.json", want: want{allowed: true, reason: []string{`namespace "kube-system" is exempt`}, audit: map[string]string{"mode": "exempt"}}},
		{file: "dev.json", want: want{allowed: true, reason: []string{"audit mode, would deny: ", pinning, unsigned},
			audit: map[string]string{"mode": "audit", "violations": "*"}}},
		{file: "prod.json", want: want{reason: []string{"imagegate denied: ", pinning, unsigned}, audit: map[string]string{"violations": "*"}}},
		{file: "prod-break-glass.json", want: want{allowed: true, reason: []string{"break-glass: admitted despite: ", pinning},
			audit: map[string]string{"break-glass": "true", "violations": "*"}}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			reg.ResetCounts()
			d := g.decide(t, readReview(t, filepath.Join(dir, tc.file), corp, reg.Host))
			tc.want.check(t, d)
			if tc.file == "kube-system.json" && reg.Total() != 0 {
				t.Errorf("registry saw %d requests for an exempt namespace, want none", reg.Total())
			}
			if v, ok := d.AuditAnnotations["violations"]; ok && (!strings.Contains(v, pinning) || !strings.Contains(v, unsigned)) {
				t.Errorf("auditAnnotations[violations] = %q, want both violations", v)
			}
		})
	}
	t.Run("compliant image in prod", func(t *testing.T) {
		want{allowed: true, noAudit: true}.check(t, g.decide(t, review("prod-payments", nil, reg.Host+"/payments/api:1.5.0@"+good.String())))
	})
}

// descriptor is the subject descriptor AttachReferrer needs for ref.
func descriptor(t *testing.T, ref string) v1.Descriptor {
	t.Helper()
	r, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}
}
