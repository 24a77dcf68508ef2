package signature

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagegate/imagegate/providers/signature/signaturetest"
)

// TestKeyRequireTlog: a key with trust.keyOptions.<key>.requireTlog must come
// with a Rekor entry verified by the named root's logs, in both layouts;
// without the option the same signatures verify as before.
func TestKeyRequireTlog(t *testing.T) {
	ss := signaturetest.NewSigstore(t)
	other := signaturetest.NewSigstore(t)
	roots := map[string]string{
		"test":  ss.WriteTrustedRoot(t, t.TempDir()),
		"other": other.WriteTrustedRoot(t, t.TempDir()),
	}
	key := signaturetest.NewSigningKey(t)
	keyPath := key.WritePublicKey(t, t.TempDir())
	stranger := signaturetest.NewSigningKey(t)
	recordedKey := filepath.Join("testdata", "cosign", "cosign.pub")

	const image = "sha256:5e1f0000000000000000000000000000000000000000000000000000000000aa"
	signedAt := time.Now().Add(-time.Minute).Truncate(time.Second)
	logged := ss.SignImageWithKey(t, key, image, CosignSignPredicate, nil, signaturetest.BundleOptions{SignedAt: signedAt, NoTimestamp: true})
	unlogged := ss.SignImageWithKey(t, key, image, CosignSignPredicate, nil, signaturetest.BundleOptions{NoTlog: true, NoTimestamp: true})
	byStranger := ss.SignImageWithKey(t, stranger, image, CosignSignPredicate, nil, signaturetest.BundleOptions{SignedAt: signedAt, NoTimestamp: true})
	payload := signaturetest.SimpleSigningPayload("registry.test/demo/app", image)
	legacyLogged := ss.SignLegacyWithKey(t, key, payload, signaturetest.LegacyOptions{BundleOptions: signaturetest.BundleOptions{SignedAt: signedAt}})
	legacyUnlogged := ss.SignLegacyWithKey(t, key, payload, signaturetest.LegacyOptions{BundleOptions: signaturetest.BundleOptions{NoTlog: true}})
	recordedBundle := recorded(t, "key-bundle-sign-v1.json")

	requireTlog := func(root string) map[string]KeyOptions {
		return map[string]KeyOptions{"release": {RequireTlog: true, TrustedRoot: root}}
	}
	bundleCheck := func(b []byte, d string) func(v *Verifier) Result {
		return func(v *Verifier) Result { return v.verifyBundle("b", b, digestRef(t, d)) }
	}
	legacyCheck := func(s signaturetest.LegacySignature) func(v *Verifier) Result {
		return func(v *Verifier) Result {
			return v.verifyLegacySig("l", s.Payload, s.Annotations, digestRef(t, image))
		}
	}
	for _, tc := range []struct {
		desc      string
		keyPath   string
		opts      map[string]KeyOptions
		run       func(v *Verifier) Result
		wantTime  bool
		wantError string
	}{
		{desc: "recorded bundle, plain key", keyPath: recordedKey,
			run: bundleCheck(recordedBundle, recordedBundleDigest)},
		{desc: "recorded bundle, requireTlog", keyPath: recordedKey, opts: requireTlog("test"),
			run:       bundleCheck(recordedBundle, recordedBundleDigest),
			wantError: `b: key "release" requires a transparency-log entry; the bundle has none`},
		{desc: "logged bundle, plain key", keyPath: keyPath,
			run: bundleCheck(logged, image)},
		{desc: "logged bundle, requireTlog", keyPath: keyPath, opts: requireTlog("test"),
			run: bundleCheck(logged, image), wantTime: true},
		{desc: "logged bundle, requireTlog with another root's log", keyPath: keyPath, opts: requireTlog("other"),
			run:       bundleCheck(logged, image),
			wantError: `key "release" requires a transparency-log entry verified by trusted root "other": failed to verify log inclusion`},
		{desc: "unlogged bundle, requireTlog", keyPath: keyPath, opts: requireTlog("test"),
			run:       bundleCheck(unlogged, image),
			wantError: `key "release" requires a transparency-log entry; the bundle has none`},
		{desc: "another key's logged bundle, requireTlog", keyPath: keyPath, opts: requireTlog("test"),
			run:       bundleCheck(byStranger, image),
			wantError: "signed by a key not in config (tried release)"},
		{desc: "logged legacy sig, requireTlog", keyPath: keyPath, opts: requireTlog("test"),
			run: legacyCheck(legacyLogged), wantTime: true},
		{desc: "logged legacy sig, plain key", keyPath: keyPath,
			run: legacyCheck(legacyLogged)},
		{desc: "unlogged legacy sig, requireTlog", keyPath: keyPath, opts: requireTlog("test"),
			run:       legacyCheck(legacyUnlogged),
			wantError: `l: key "release" requires a transparency-log entry; the signature (no dev.sigstore.cosign/bundle annotation) has none`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			v, err := New(Options{Keys: map[string]string{"release": tc.keyPath}, TrustedRoots: roots, KeyOptions: tc.opts}, nil)
			if err != nil {
				t.Fatal(err)
			}
			res := tc.run(v)
			if tc.wantError != "" {
				if len(res.Signatures) != 0 || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], tc.wantError) {
					t.Fatalf("signatures %+v, errors %q; want none verified and an error containing %q", res.Signatures, res.Errors, tc.wantError)
				}
				return
			}
			if len(res.Signatures) != 1 || len(res.Errors) != 0 {
				t.Fatalf("signatures %+v, errors %q; want one verified", res.Signatures, res.Errors)
			}
			s := res.Signatures[0]
			if s.Signer.Kind != "key" || s.Signer.Key != "release" {
				t.Errorf("signer = %+v, want key release", s.Signer)
			}
			switch {
			case tc.wantTime && s.Timestamp != signedAt.UTC().Format(time.RFC3339):
				t.Errorf("timestamp = %q, want the Rekor integrated time %s", s.Timestamp, signedAt.UTC().Format(time.RFC3339))
			case !tc.wantTime && s.Timestamp != "":
				t.Errorf("timestamp = %q, want none (no log entry is verified without requireTlog)", s.Timestamp)
			}
		})
	}
}

// TestKeyOptionsErrors: trust.keyOptions naming a key or root that is not
// configured is an error naming the entry.
func TestKeyOptionsErrors(t *testing.T) {
	ss := signaturetest.NewSigstore(t)
	rootPath := ss.WriteTrustedRoot(t, t.TempDir())
	keys := map[string]string{"release": filepath.Join("testdata", "cosign", "cosign.pub")}
	for _, tc := range []struct {
		desc string
		opts map[string]KeyOptions
		want string
	}{
		{desc: "unknown key", opts: map[string]KeyOptions{"ci": {RequireTlog: true, TrustedRoot: "test"}},
			want: `trust.keyOptions.ci: no key "ci" in trust.keys`},
		{desc: "unknown root", opts: map[string]KeyOptions{"release": {RequireTlog: true, TrustedRoot: "public-good"}},
			want: `trust.keyOptions.release.trustedRoot: no trusted root "public-good" in trust.trustedRoots or trust.tuf`},
		{desc: "requireTlog without a root", opts: map[string]KeyOptions{"release": {RequireTlog: true}},
			want: "trust.keyOptions.release.trustedRoot: required with requireTlog"},
		{desc: "root without requireTlog", opts: map[string]KeyOptions{"release": {TrustedRoot: "test"}},
			want: "trust.keyOptions.release.trustedRoot: only used with requireTlog: true"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := New(Options{Keys: keys, TrustedRoots: map[string]string{"test": rootPath}, KeyOptions: tc.opts}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New() error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
