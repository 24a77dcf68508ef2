package signature

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
)

// Thresholds are the keyless verifier's requirements; 0 drops one. An
// all-zero Thresholds means DefaultThresholds.
type Thresholds struct {
	SignedCertificateTimestamps int // SCTs embedded in the Fulcio certificate
	TransparencyLog             int // Rekor entries
	ObserverTimestamps          int // Rekor integrated times or RFC 3161 timestamps
}

// DefaultThresholds require one SCT, one transparency-log entry and one
// observer timestamp, as cosign does for the public-good instance.
var DefaultThresholds = Thresholds{SignedCertificateTimestamps: 1, TransparencyLog: 1, ObserverTimestamps: 1}

var time0 time.Time

// Options configure a Verifier.
type Options struct {
	// Keys maps a key name (reported as signer.key) to a PEM public key file:
	// ECDSA, RSA or Ed25519.
	Keys map[string]string
	// TrustedRoots maps a root name to a Sigstore trusted_root.json file (for
	// example the public-good root shipped in npm @sigstore/tuf), so keyless
	// verification works offline.
	TrustedRoots map[string]string
	Thresholds   Thresholds

	MaxReferrers      int   // referrers opened per digest; default 32
	MaxEntries        int   // signatures/attestations checked per digest and layout; default 32
	MaxBundleBytes    int64 // one bundle, payload or envelope; default 1 MiB
	MaxPredicateBytes int64 // predicate carried into facts; default 64 KiB
}

type keyVerifier struct {
	name string
	v    *verify.Verifier
}

type rootVerifier struct {
	name string
	v    *verify.Verifier
}

// loadTrust builds one long-lived sigstore-go verifier per key and per root.
func loadTrust(o Options) ([]keyVerifier, []rootVerifier, error) {
	var errs []error
	var keys []keyVerifier
	for _, name := range sortedKeys(o.Keys) {
		path := o.Keys[name]
		pub, err := loadPublicKey(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust.keys.%s: %w", name, err))
			continue
		}
		sv, err := sigsig.LoadDefaultVerifier(pub)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust.keys.%s %s: %w", name, path, err))
			continue
		}
		material := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(sv, time0, time0), nil
		})
		v, err := verify.NewVerifier(material, verify.WithNoObserverTimestamps())
		if err != nil {
			errs = append(errs, fmt.Errorf("trust.keys.%s: %w", name, err))
			continue
		}
		keys = append(keys, keyVerifier{name: name, v: v})
	}
	t := o.Thresholds
	if t == (Thresholds{}) {
		t = DefaultThresholds
	}
	if t.SignedCertificateTimestamps < 0 || t.TransparencyLog < 0 || t.ObserverTimestamps < 0 {
		errs = append(errs, errors.New("trust.thresholds: values must not be negative"))
	}
	var roots []rootVerifier
	for _, name := range sortedKeys(o.TrustedRoots) {
		path := o.TrustedRoots[name]
		tr, err := root.NewTrustedRootFromPath(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust.trustedRoots.%s %s: %w", name, path, err))
			continue
		}
		var vo []verify.VerifierOption
		if t.SignedCertificateTimestamps > 0 {
			vo = append(vo, verify.WithSignedCertificateTimestamps(t.SignedCertificateTimestamps))
		}
		if t.TransparencyLog > 0 {
			vo = append(vo, verify.WithTransparencyLog(t.TransparencyLog))
		}
		if t.ObserverTimestamps > 0 {
			vo = append(vo, verify.WithObserverTimestamps(t.ObserverTimestamps))
		}
		v, err := verify.NewVerifier(tr, vo...)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust.trustedRoots.%s: %w", name, err))
			continue
		}
		roots = append(roots, rootVerifier{name: name, v: v})
	}
	return keys, roots, errors.Join(errs...)
}

func loadPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PEM public key: %w", path, err)
	}
	return pub, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
