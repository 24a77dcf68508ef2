// Package signaturetest signs and attests images with a real, locally built
// cosign binary and runs the real distribution registry, so that tests of the
// signature verifier check what cosign actually writes rather than what we
// think it writes.
//
// The binaries are built once by `make tools` into
// ${IMAGEGATE_TOOLS:-$HOME/.cache/imagegate/tools}:
//
//	cosign-v3/cosign  github.com/sigstore/cosign/v3/cmd/cosign (COSIGN_V3_VERSION)
//	cosign-v2/cosign  github.com/sigstore/cosign/v2/cmd/cosign (COSIGN_V2_VERSION)
//	bin/registry      github.com/distribution/distribution/v3/cmd/registry
//
// A missing binary fails the test (it is never skipped): a skipped signature
// test looks exactly like a passing one.
//
// Everything is offline and key based: cosign never uploads to Rekor, never
// reads a TUF signing config or trusted root, and never sees the caller's
// ~/.docker or ~/.sigstore. Each command runs with a fresh HOME (and
// TUF_ROOT inside it), an environment of PATH, HOME and COSIGN_PASSWORD only,
// plus HTTP(S)_PROXY pointing at a closed loopback port: loopback registries
// are never proxied, every other connection is refused at once instead of
// hanging, and any such attempt fails the test. Each command has a timeout
// (CommandTimeout); a failure reports the command line and cosign's output.
//
// Storage layouts (see Layout):
//
//	                 Bundle                                    Legacy
//	cosign v3 sign   OCI referrer, bundle v0.3 (default)       sha256-<hex>.sig (--new-bundle-format=false)
//	cosign v2 sign   OCI referrer (--new-bundle-format)        sha256-<hex>.sig (default)
//	attest           the same, DSSE in-toto statement          sha256-<hex>.att
//
// On a registry without the referrers API (distribution) the referrer is
// listed in the fallback index tag sha256-<hex>.
package signaturetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
)

// CommandTimeout bounds every cosign invocation.
const CommandTimeout = 2 * time.Minute

// Cosign is a built cosign binary of a given major version.
type Cosign struct {
	// Path is the binary.
	Path string
	// Version is the major version, "v3" or "v2"; it selects the flags.
	Version string
}

// FindCosign returns the cosign binary of the given major version ("v3" or
// "v2") that `make tools` built, and fails the test if it is missing.
func FindCosign(t testing.TB, major string) Cosign {
	t.Helper()
	if major != "v3" && major != "v2" {
		t.Fatalf("FindCosign(%q): major version must be \"v3\" or \"v2\"", major)
	}
	bin := filepath.Join(registrytest.ToolsDir(), "cosign-"+major, "cosign")
	if !registrytest.Executable(bin) {
		t.Fatalf("cosign %s not built: run `make tools` (looked for %s)", major, bin)
	}
	return Cosign{Path: bin, Version: major}
}

// String is e.g. "cosign v3".
func (c Cosign) String() string { return "cosign " + c.Version }

// KeyPair is a cosign key pair on disk.
type KeyPair struct {
	// Dir holds both files.
	Dir string
	// PrivateKey is the encrypted private key (cosign.key), PublicKey the
	// PEM public key (cosign.pub) that a verifier is configured with.
	PrivateKey, PublicKey string
	// Password decrypts PrivateKey (passed as COSIGN_PASSWORD).
	Password string
}

// PublicKeyPEM reads the public key file.
func (k KeyPair) PublicKeyPEM(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(k.PublicKey)
	if err != nil {
		t.Fatalf("read public key: %v", err)
	}
	return b
}

// Hint is what cosign writes as verificationMaterial.publicKey.hint in a
// key-signed bundle: base64 (standard, padded) of the SHA-256 of the public
// key's PKIX DER encoding.
func (k KeyPair) Hint(t testing.TB) string {
	t.Helper()
	block, _ := pem.Decode(k.PublicKeyPEM(t))
	if block == nil {
		t.Fatalf("%s: no PEM block", k.PublicKey)
	}
	sum := sha256.Sum256(block.Bytes)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// GenerateKeyPair runs `cosign generate-key-pair` in dir (created if needed;
// use t.TempDir()) and returns the key pair. Key pairs of v2 and v3 are
// interchangeable (ECDSA P-256, encrypted PEM).
func (c Cosign) GenerateKeyPair(t testing.TB, dir string) KeyPair {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	k := KeyPair{
		Dir:        dir,
		PrivateKey: filepath.Join(dir, "cosign.key"),
		PublicKey:  filepath.Join(dir, "cosign.pub"),
		Password:   "imagegate-test",
	}
	if _, err := c.run(t, dir, k.Password, "generate-key-pair"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{k.PrivateKey, k.PublicKey} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s generate-key-pair did not write %s: %v", c, f, err)
		}
	}
	return k
}

// Layout is where cosign stores a signature or attestation.
type Layout int

const (
	// Bundle is a Sigstore bundle v0.3 (media type
	// application/vnd.dev.sigstore.bundle.v0.3+json) in an OCI manifest whose
	// subject is the image: found with the referrers API or, on registries
	// without it, in the sha256-<hex> fallback index tag. Signatures and
	// attestations are both DSSE in-toto statements.
	Bundle Layout = iota
	// Legacy is cosign's tag scheme: sha256-<hex>.sig (simple signing
	// payloads) and sha256-<hex>.att (DSSE envelopes).
	Legacy
)

func (l Layout) String() string {
	switch l {
	case Bundle:
		return "bundle"
	case Legacy:
		return "legacy"
	}
	return fmt.Sprintf("Layout(%d)", int(l))
}

// registryFlags let cosign talk plain HTTP to the test registries. For
// 127.0.0.1 and localhost go-containerregistry already picks HTTP, so they
// only matter for a registry on another address; harmless otherwise. The
// same flags exist in v2 and v3.
var registryFlags = []string{"--allow-http-registry=true", "--allow-insecure-registry=true"}

// layoutFlags select the storage layout; the default differs per version.
func (c Cosign) layoutFlags(layout Layout) []string {
	switch layout {
	case Bundle:
		return []string{"--new-bundle-format=true"}
	case Legacy:
		return []string{"--new-bundle-format=false"}
	}
	panic(fmt.Sprintf("signaturetest: unknown layout %d", int(layout)))
}

// signFlags are the offline key-signing flags shared by sign and attest,
// identical for v2 and v3: --tlog-upload=false (no Rekor entry; without it
// both versions POST to rekor.sigstore.dev) and --use-signing-config=false
// (v2's default; v3 defaults to a TUF-provided signing config and rejects
// --tlog-upload=false next to it). Both flags are deprecated in v3, which
// prints a warning and works. --yes skips the Sigstore terms prompt.
func (c Cosign) signFlags(k KeyPair, layout Layout) []string {
	f := []string{"--key", k.PrivateKey, "--tlog-upload=false", "--use-signing-config=false", "--yes"}
	f = append(f, c.layoutFlags(layout)...)
	return append(f, registryFlags...)
}

// emptyTrustedRoot is a trusted root with no authorities, logs or
// timestamping authorities: enough for cosign v2 to verify a key-signed
// bundle without fetching the public-good root from TUF.
const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

// verifyFlags are the offline flags for verify and verify-attestation: a key
// signature has no tlog entry to check. cosign v3 needs no trusted root for
// that. cosign v2 fetches one from TUF unless given --trusted-root, and
// insists on one for bundles ("trusted root is required when using new
// bundle format"), so it always gets an empty one.
func (c Cosign) verifyFlags(t testing.TB, k KeyPair, layout Layout) []string {
	t.Helper()
	f := []string{"--key", k.PublicKey, "--insecure-ignore-tlog=true", "--output=json"}
	f = append(f, c.layoutFlags(layout)...)
	if c.Version == "v2" {
		root := filepath.Join(t.TempDir(), "trusted_root.json")
		if err := os.WriteFile(root, []byte(emptyTrustedRoot), 0o600); err != nil {
			t.Fatal(err)
		}
		f = append(f, "--trusted-root", root)
	}
	return append(f, registryFlags...)
}

// Sign runs `cosign sign` for image (host/repo@sha256:…) with the key and
// layout, offline. extra are appended, e.g. "--recursive" to also sign each
// manifest of an index. It fails the test if cosign fails.
func (c Cosign) Sign(t testing.TB, k KeyPair, image string, layout Layout, extra ...string) {
	t.Helper()
	args := append([]string{"sign"}, c.signFlags(k, layout)...)
	args = append(args, extra...)
	args = append(args, image)
	if _, err := c.run(t, "", k.Password, args...); err != nil {
		t.Fatal(err)
	}
}

// Attest runs `cosign attest` for image with predicate (JSON) of
// predicateType, and fails the test if cosign fails. extra are appended,
// e.g. "--recursive". The statement is an in-toto Statement v0.1 (in both
// layouts) whose one subject is the image digest.
//
// predicateType is a URI, or one of cosign's short names: slsaprovenance1
// (https://slsa.dev/provenance/v1), slsaprovenance02 (…/v0.2), spdxjson,
// cyclonedx, link, vuln, openvex, custom. With a URI the predicate (a JSON
// object) is stored as given. A short name decodes it into a typed struct and
// re-encodes it: unknown fields may go, and cosign v2 renames SLSA v1's
// runDetails.metadata.invocationId to invocationID. "custom" wraps the bytes
// as {"Data": …, "Timestamp": …} under https://cosign.sigstore.dev/attestation/v1.
func (c Cosign) Attest(t testing.TB, k KeyPair, image string, layout Layout, predicateType string, predicate []byte, extra ...string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "predicate.json")
	if err := os.WriteFile(file, predicate, 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"attest"}, c.signFlags(k, layout)...)
	args = append(args, "--type", predicateType, "--predicate", file)
	args = append(args, extra...)
	args = append(args, image)
	if _, err := c.run(t, "", k.Password, args...); err != nil {
		t.Fatal(err)
	}
}

// Verify runs `cosign verify` for image with the public key, offline, and
// returns its error (a *CommandError with the command line and cosign's
// output; nil when cosign accepts a signature), for cross-checking
// imagegate's verdicts against cosign's. A key that signed nothing fails
// with "Error: no matching signatures" (or "... attestations" for bundles).
//
// layout is cosign's --new-bundle-format, which is a preference, not a
// filter:
//
//	v3 Bundle  bundles if the image has any, else the legacy tags
//	v3 Legacy  legacy tags only ("Error: no signatures found")
//	v2 Bundle  bundles only ("Error: no valid bundles exist in registry")
//	v2 Legacy  bundles if the image has any, else the legacy tags
//
// The test fails (rather than Verify returning an error) if cosign tries to
// reach the network.
func (c Cosign) Verify(t testing.TB, k KeyPair, image string, layout Layout) error {
	t.Helper()
	args := append([]string{"verify"}, c.verifyFlags(t, k, layout)...)
	args = append(args, image)
	_, err := c.run(t, "", "", args...)
	return err
}

// VerifyAttestation runs `cosign verify-attestation` for image with the
// public key, offline, and returns its error. predicateType (URI or short
// name) may be "" for any attestation.
func (c Cosign) VerifyAttestation(t testing.TB, k KeyPair, image string, layout Layout, predicateType string) error {
	t.Helper()
	args := append([]string{"verify-attestation"}, c.verifyFlags(t, k, layout)...)
	if predicateType != "" {
		args = append(args, "--type", predicateType)
	}
	args = append(args, image)
	_, err := c.run(t, "", "", args...)
	return err
}

// Run runs cosign with exactly args (the offline environment, timeout and
// fresh HOME still apply) and returns its combined output. password, if
// set, is passed as COSIGN_PASSWORD. For flags the helpers do not cover.
func (c Cosign) Run(t testing.TB, password string, args ...string) (string, error) {
	t.Helper()
	return c.run(t, "", password, args...)
}

// CommandError is a failed cosign command.
type CommandError struct {
	Args   []string
	Output string
	Err    error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%s: %v\n%s", strings.Join(e.Args, " "), e.Err, e.Output)
}

func (e *CommandError) Unwrap() error { return e.Err }

// noProxy is an address nothing listens on: every non-loopback connection
// cosign attempts (Rekor, Fulcio, TUF) goes to this "proxy" and fails at
// once. Go's proxy logic never proxies loopback hosts, so the test
// registries are reached directly.
const noProxy = "http://127.0.0.1:9"

func (c Cosign) run(t testing.TB, dir, password string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	if dir == "" {
		dir = home
	}
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, args...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"TUF_ROOT=" + filepath.Join(home, ".sigstore", "root"),
		"HTTP_PROXY=" + noProxy,
		"HTTPS_PROXY=" + noProxy,
		"NO_PROXY=",
	}
	if password != "" || args[0] == "generate-key-pair" {
		cmd.Env = append(cmd.Env, "COSIGN_PASSWORD="+password)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	line := append([]string{c.Path}, args...)
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", CommandTimeout, ctx.Err())
	}
	if testing.Verbose() {
		t.Logf("%s: %s (%v)", c, strings.Join(line, " "), time.Since(start).Round(time.Millisecond))
	}
	// Whatever the outcome, a connection attempt through the refusing proxy
	// means cosign went for Rekor, Fulcio or TUF: the flags are wrong, and a
	// failure for that reason must not pass for a verification failure.
	if strings.Contains(out.String(), "proxyconnect") {
		t.Fatalf("%s tried to reach the network (offline flags missing?): %s\n%s", c, strings.Join(line, " "), out.String())
	}
	if err != nil {
		return out.String(), &CommandError{Args: line, Output: out.String(), Err: err}
	}
	return out.String(), nil
}

// StartDistribution runs the real distribution registry; see
// registrytest.StartDistribution.
func StartDistribution(t testing.TB) string { return registrytest.StartDistribution(t) }
