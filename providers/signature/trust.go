package signature

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
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
	// TUF lists trusted roots fetched from TUF repositories (the target
	// trusted_root.json, as Sigstore publishes it): in New, and again at
	// each Refresh. Names share one namespace with TrustedRoots.
	TUF []TUFRoot
	// KeyOptions holds per-key requirements, by name in Keys.
	KeyOptions map[string]KeyOptions
	Thresholds Thresholds
	// TUFTimeout bounds each HTTP request to a TUF mirror; default 30s.
	TUFTimeout time.Duration

	MaxReferrers      int   // referrers opened per digest; default 32
	MaxEntries        int   // signatures/attestations checked per digest and layout; default 32
	MaxBundleBytes    int64 // one bundle, payload or envelope; default 1 MiB
	MaxPredicateBytes int64 // predicate carried into facts; default 64 KiB
}

// KeyOptions are the requirements for signatures by one named key.
type KeyOptions struct {
	// RequireTlog demands a Rekor entry (inclusion promise or proof) for the
	// key's signatures, verified with TrustedRoot's transparency logs; the
	// entry's integrated time (or an RFC 3161 timestamp from that root's
	// TSAs) becomes the signature's timestamp. Off, a key-signed signature
	// needs no log entry and no timestamp (cosign --tlog-upload=false).
	RequireTlog bool
	// TrustedRoot names the root (in TrustedRoots or TUF) whose Rekor logs
	// and timestamping authorities are trusted for this key. Required with
	// RequireTlog.
	TrustedRoot string
}

// TUFRoot is a trusted root fetched from a TUF repository. server/build.go
// converts config.TUFRoot to it (as KeyOptions): keep the fields in step.
type TUFRoot struct {
	Name string
	// Mirror is the repository's base URL (metadata at <mirror>/N.root.json,
	// timestamp.json, …; targets under <mirror>/targets/).
	Mirror string
	// RootFile is the initial TUF root.json the repository is trusted with.
	// Empty only for Sigstore's public-good and staging mirrors, whose
	// roots ship inside sigstore-go.
	RootFile string
	// CachePath is a directory for TUF metadata and targets; empty keeps
	// them in memory only (everything is fetched at each start and each
	// Refresh, from RootFile on: no rollback protection across refreshes,
	// which a directory gives).
	CachePath string
}

type keyVerifier struct {
	name string
	v    *verify.Verifier
	// tlog, for a key with RequireTlog, verifies with the root's Rekor logs
	// and requires one entry; v alone (no log) tells "not this key" apart
	// from "this key, but not logged".
	tlog     *verify.Verifier
	tlogRoot string
}

type rootVerifier struct {
	name string
	v    *verify.Verifier
}

// trustState is one complete load of the trust configuration: every key and
// every root. It is never modified once built; Refresh replaces it whole.
type trustState struct {
	keys       []keyVerifier
	roots      []rootVerifier
	thresholds Thresholds // in effect
	// fingerprint identifies what was loaded (every root's content, every
	// key, the key options and thresholds): equal fingerprints verify
	// alike, so a refresh that loads the same material changes nothing.
	fingerprint [sha256.Size]byte
}

// loadTrust builds one long-lived sigstore-go verifier per key and per root,
// reading the files and fetching TUF roots now (ctx bounds the fetches).
// Any error is one for the whole load: a partial state is never returned.
func loadTrust(ctx context.Context, o Options) (*trustState, error) {
	var errs []error
	t := o.Thresholds
	if t == (Thresholds{}) {
		t = DefaultThresholds
	}
	if t.SignedCertificateTimestamps < 0 || t.TransparencyLog < 0 || t.ObserverTimestamps < 0 {
		errs = append(errs, errors.New("trust.thresholds: values must not be negative"))
	}

	// Trusted material by root name: files, then TUF repositories.
	material := map[string]root.TrustedMaterial{}
	where := map[string]string{} // root name → its config field
	for _, name := range sortedKeys(o.TrustedRoots) {
		path := o.TrustedRoots[name]
		where[name] = "trust.trustedRoots." + name
		tr, err := root.NewTrustedRootFromPath(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust.trustedRoots.%s %s: %w", name, path, err))
			continue
		}
		material[name] = tr
	}
	timeout := o.TUFTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	for i, r := range o.TUF {
		field := fmt.Sprintf("trust.tuf[%d]", i)
		if r.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: required", field))
			continue
		}
		if other, dup := where[r.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: %q is already the name of %s", field, r.Name, other))
			continue
		}
		where[r.Name] = field
		tr, err := fetchTUFRoot(ctx, r, timeout)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (name %q, mirror %s): %w", field, r.Name, r.Mirror, err))
			continue
		}
		material[r.Name] = tr
	}

	fp := sha256.New()
	fmt.Fprintf(fp, "thresholds %+v\n", t)
	var roots []rootVerifier
	for _, name := range sortedKeys(material) {
		if m, ok := material[name].(json.Marshaler); ok {
			if b, err := m.MarshalJSON(); err == nil {
				fmt.Fprintf(fp, "root %q %d\n", name, len(b))
				fp.Write(b)
			}
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
		v, err := verify.NewVerifier(material[name], vo...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where[name], err))
			continue
		}
		roots = append(roots, rootVerifier{name: name, v: v})
	}

	for _, name := range sortedKeys(o.KeyOptions) {
		ko := o.KeyOptions[name]
		fmt.Fprintf(fp, "keyOptions %q %+v\n", name, ko)
		field := "trust.keyOptions." + name
		if _, ok := o.Keys[name]; !ok {
			errs = append(errs, fmt.Errorf("%s: no key %q in trust.keys", field, name))
		}
		switch _, known := where[ko.TrustedRoot]; {
		case ko.RequireTlog && ko.TrustedRoot == "":
			errs = append(errs, fmt.Errorf("%s.trustedRoot: required with requireTlog (the root whose Rekor logs are trusted)", field))
		case !ko.RequireTlog && ko.TrustedRoot != "":
			errs = append(errs, fmt.Errorf("%s.trustedRoot: only used with requireTlog: true", field))
		case ko.TrustedRoot != "" && !known:
			errs = append(errs, fmt.Errorf("%s.trustedRoot: no trusted root %q in trust.trustedRoots or trust.tuf", field, ko.TrustedRoot))
		}
	}

	var keys []keyVerifier
	for _, name := range sortedKeys(o.Keys) {
		path := o.Keys[name]
		pub, pem, err := loadPublicKey(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust.keys.%s: %w", name, err))
			continue
		}
		fmt.Fprintf(fp, "key %q %d\n", name, len(pem))
		fp.Write(pem)
		sv, err := sigsig.LoadDefaultVerifier(pub)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust.keys.%s %s: %w", name, path, err))
			continue
		}
		keyMaterial := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(sv, time0, time0), nil
		})
		v, err := verify.NewVerifier(keyMaterial, verify.WithNoObserverTimestamps())
		if err != nil {
			errs = append(errs, fmt.Errorf("trust.keys.%s: %w", name, err))
			continue
		}
		kv := keyVerifier{name: name, v: v}
		if ko := o.KeyOptions[name]; ko.RequireTlog {
			rm, ok := material[ko.TrustedRoot]
			if !ok {
				continue // reported above (unknown or failed root)
			}
			// The key first: TrustedMaterialCollection asks its members in
			// order for the public key, and the root has none.
			kv.tlog, err = verify.NewVerifier(root.TrustedMaterialCollection{keyMaterial, rm},
				verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1))
			if err != nil {
				errs = append(errs, fmt.Errorf("trust.keyOptions.%s: %w", name, err))
				continue
			}
			kv.tlogRoot = ko.TrustedRoot
		}
		keys = append(keys, kv)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ts := &trustState{keys: keys, roots: roots, thresholds: t}
	fp.Sum(ts.fingerprint[:0])
	return ts, nil
}

// loadPublicKey reads the PEM public key at path: the key and the file.
func loadPublicKey(path string) (crypto.PublicKey, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a PEM public key: %w", path, err)
	}
	return pub, b, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
