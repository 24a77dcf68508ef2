package signaturetest_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/providers/signature/signaturetest"
)

// TestLegacyKeylessCosignVerifies checks SignLegacy against the real thing:
// cosign v2 verifies the pushed .sig tag offline with the Sigstore's trusted
// root (SCT, Rekor SET, certificate chain and identity), and rejects the
// entry without its Rekor bundle and the one for another identity.
func TestLegacyKeylessCosignVerifies(t *testing.T) {
	cosign := signaturetest.FindCosign(t, "v2")
	ss := signaturetest.NewSigstore(t)
	rootPath := ss.WriteTrustedRoot(t, t.TempDir())
	reg := registrytest.New(t)

	id := signaturetest.Identity{
		Issuer:     "https://token.actions.githubusercontent.com",
		Subject:    "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1",
		Extensions: map[string]string{"githubWorkflowRepository": "acme/app"},
	}
	verify := func(t *testing.T, image string, extra ...string) (string, error) {
		args := append([]string{"verify", "--trusted-root", rootPath, "--offline", "--allow-http-registry",
			"--certificate-identity", id.Subject, "--certificate-oidc-issuer", id.Issuer, "--output", "json"}, extra...)
		return cosign.Run(t, "", append(args, image)...)
	}

	for _, tc := range []struct {
		desc    string
		o       signaturetest.LegacyOptions
		id      signaturetest.Identity
		wantErr string
	}{
		{desc: "as cosign writes it", id: id},
		{desc: "without the chain annotation", id: id, o: signaturetest.LegacyOptions{NoChain: true}},
		{desc: "without the Rekor bundle", id: id, o: signaturetest.LegacyOptions{BundleOptions: signaturetest.BundleOptions{NoTlog: true}}, wantErr: "offline verification failed"},
		{desc: "another identity", id: signaturetest.Identity{Issuer: id.Issuer, Subject: "https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main"}, wantErr: "none of the expected identities matched"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			repo := "acme/" + strings.ToLower(strings.ReplaceAll(tc.desc, " ", "-"))
			d := reg.PushImage(t, repo, "v1", registrytest.Image{Created: time.Now()})
			image := reg.Host + "/" + repo + "@" + d.String()
			payload := signaturetest.SimpleSigningPayload(reg.Host+"/"+repo, d.String())
			signaturetest.PushLegacySignatures(t, reg.Host, repo, d.String(), ss.SignLegacy(t, tc.id, payload, tc.o))

			out, err := verify(t, image)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(strings.ToLower(out), strings.ToLower(tc.wantErr)) {
					t.Fatalf("cosign verify error = %v, output %s; want a failure mentioning %q", err, out, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("cosign verify: %v", err)
			}
			// The JSON lines after the human-readable preamble.
			start := strings.Index(out, "[")
			if start < 0 {
				t.Fatalf("no JSON in cosign output: %s", out)
			}
			var verified []struct {
				Critical struct {
					Image struct {
						DockerManifestDigest string `json:"docker-manifest-digest"`
					} `json:"image"`
				} `json:"critical"`
				Optional map[string]any `json:"optional"`
			}
			if err := json.NewDecoder(strings.NewReader(out[start:])).Decode(&verified); err != nil {
				t.Fatalf("cosign output: %v\n%s", err, out)
			}
			if len(verified) != 1 || verified[0].Critical.Image.DockerManifestDigest != d.String() {
				t.Fatalf("cosign verified %+v, want one signature for %s", verified, d)
			}
			if verified[0].Optional["Bundle"] == nil || verified[0].Optional["Subject"] != id.Subject {
				t.Errorf("cosign's view of the signature: %+v, want its Rekor bundle and subject", verified[0].Optional)
			}
		})
	}
}

// TestKeyTlogCosignVerifies checks SignImageWithKey and SignLegacyWithKey
// against the real thing: cosign verifies a key signature with its Rekor
// entry offline, the transparency log required (cosign's default), v3 the
// bundle attached as a referrer and v2 the legacy .sig tag.
func TestKeyTlogCosignVerifies(t *testing.T) {
	ss := signaturetest.NewSigstore(t)
	rootPath := ss.WriteTrustedRoot(t, t.TempDir())
	key := signaturetest.NewSigningKey(t)
	pub := key.WritePublicKey(t, t.TempDir())
	reg := registrytest.New(t)

	for _, tc := range []struct {
		major, layout string
		noTlog        bool
	}{
		{major: "v3", layout: "bundle"},
		{major: "v2", layout: "legacy"},
		{major: "v3", layout: "bundle", noTlog: true},
		{major: "v2", layout: "legacy", noTlog: true},
	} {
		sub := tc.major + "-" + tc.layout
		if tc.noTlog {
			sub += "-unlogged"
		}
		t.Run(sub, func(t *testing.T) {
			cosign := signaturetest.FindCosign(t, tc.major)
			repo := "acme/" + sub
			d := reg.PushImage(t, repo, "v1", registrytest.Image{Created: time.Now()})
			image := reg.Host + "/" + repo + "@" + d.String()
			o := signaturetest.BundleOptions{NoTlog: tc.noTlog, NoTimestamp: true}
			if tc.layout == "bundle" {
				ref, err := name.NewDigest(image, name.Insecure)
				if err != nil {
					t.Fatal(err)
				}
				subject, err := remote.Head(ref, remote.WithContext(t.Context()))
				if err != nil {
					t.Fatal(err)
				}
				signaturetest.AttachReferrer(t, reg.Host, repo, *subject, ss.SignImageWithKey(t, key, d.String(), "https://sigstore.dev/cosign/sign/v1", nil, o), "https://sigstore.dev/cosign/sign/v1")
			} else {
				payload := signaturetest.SimpleSigningPayload(reg.Host+"/"+repo, d.String())
				signaturetest.PushLegacySignatures(t, reg.Host, repo, d.String(), ss.SignLegacyWithKey(t, key, payload, signaturetest.LegacyOptions{BundleOptions: o}))
			}
			out, err := cosign.Run(t, "", "verify", "--key", pub, "--trusted-root", rootPath, "--offline",
				"--allow-http-registry", "--new-bundle-format="+map[string]string{"bundle": "true", "legacy": "false"}[tc.layout], "--output", "json", image)
			if tc.noTlog {
				// v3 says why; v2 only that its offline (SET) check failed.
				want := map[string]string{"bundle": "not enough verified log entries", "legacy": "offline verification failed"}[tc.layout]
				if err == nil || !strings.Contains(out, want) {
					t.Fatalf("cosign verify of an unlogged key signature, the tlog required: error %v, output %s; want a failure mentioning %q", err, out, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("cosign verify: %v", err)
			}
		})
	}
}
