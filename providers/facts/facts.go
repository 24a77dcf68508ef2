package facts

import "encoding/json"

// SchemaVersion is the version of the facts object.
const SchemaVersion = "v1"

// Facts is everything imagegate knows about one image.
type Facts struct {
	// Image echoes the key as the caller wrote it.
	Image     string    `json:"image"`
	Reference Reference `json:"reference"`
	// Digest is what the reference resolves to now: the pinned digest for a digest
	// reference, otherwise the tag's current digest (an index or a manifest).
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	// Platforms lists every platform manifest of an index, in index order. Empty for
	// a single-platform manifest.
	Platforms []Platform `json:"platforms"`
	// Config is the image config of a single-platform manifest; nil for an index
	// (each platform carries its own).
	Config *Config `json:"config,omitempty"`
	// TagDigest is set for repo:tag@digest keys: the digest the tag points to now,
	// so policy can tell a pinned digest that is no longer the tag's latest.
	TagDigest string `json:"tagDigest,omitempty"`
	// Signatures and Attestations hold verified entries only.
	Signatures         []Signature   `json:"signatures"`
	Attestations       []Attestation `json:"attestations"`
	VerificationErrors []string      `json:"verificationErrors"`
}

// Reference is the parsed, normalised image reference.
type Reference struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
}

// Platform is one child manifest of an index.
type Platform struct {
	OS           string  `json:"os"`
	Architecture string  `json:"architecture"`
	Variant      string  `json:"variant,omitempty"`
	OSVersion    string  `json:"osVersion,omitempty"`
	Digest       string  `json:"digest"`
	MediaType    string  `json:"mediaType"`
	Size         int64   `json:"size"`
	Config       *Config `json:"config,omitempty"`
	// Signatures, Attestations and VerificationErrors of this platform
	// manifest itself (the index's own are on Facts): a rule chooses whether
	// the index signature suffices or each platform must be signed.
	Signatures         []Signature   `json:"signatures"`
	Attestations       []Attestation `json:"attestations"`
	VerificationErrors []string      `json:"verificationErrors"`
}

// Config holds the policy-relevant parts of an image config.
type Config struct {
	// Created is RFC 3339, empty when the config has none.
	Created      string `json:"created,omitempty"`
	Labels       Labels `json:"labels"`
	User         string `json:"user"`
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
	Digest       string `json:"digest"`
}

// Signer identifies who made a verified signature or attestation.
type Signer struct {
	Kind       string            `json:"kind"` // "key" or "keyless"
	Key        string            `json:"key,omitempty"`
	Issuer     string            `json:"issuer,omitempty"`
	Subject    string            `json:"subject,omitempty"`
	Extensions map[string]string `json:"extensions,omitempty"`
}

// Signature is one verified signature over Digest.
type Signature struct {
	Format    string `json:"format"` // "bundle" or "legacy"
	Digest    string `json:"digest"`
	Signer    Signer `json:"signer"`
	Timestamp string `json:"timestamp,omitempty"`
}

// Attestation is one verified in-toto attestation.
type Attestation struct {
	Format        string          `json:"format"`
	Digest        string          `json:"digest"`
	PredicateType string          `json:"predicateType"`
	Signer        Signer          `json:"signer"`
	Timestamp     string          `json:"timestamp,omitempty"`
	Predicate     json.RawMessage `json:"predicate,omitempty"`
}

// Signed reports whether any verified signature or attestation is present, on
// the image or any platform.
func (f *Facts) Signed() bool {
	if len(f.Signatures)+len(f.Attestations) > 0 {
		return true
	}
	for _, p := range f.Platforms {
		if len(p.Signatures)+len(p.Attestations) > 0 {
			return true
		}
	}
	return false
}

// Normalize replaces nil lists with empty ones so the JSON shape is stable:
// policy can rely on `signatures: []` rather than a missing field.
func (f *Facts) Normalize() {
	if f.Platforms == nil {
		f.Platforms = []Platform{}
	}
	if f.Signatures == nil {
		f.Signatures = []Signature{}
	}
	if f.Attestations == nil {
		f.Attestations = []Attestation{}
	}
	if f.VerificationErrors == nil {
		f.VerificationErrors = []string{}
	}
	if f.Config != nil && f.Config.Labels == nil {
		f.Config.Labels = Labels{}
	}
	for i := range f.Platforms {
		p := &f.Platforms[i]
		if p.Config != nil && p.Config.Labels == nil {
			p.Config.Labels = Labels{}
		}
		if p.Signatures == nil {
			p.Signatures = []Signature{}
		}
		if p.Attestations == nil {
			p.Attestations = []Attestation{}
		}
		if p.VerificationErrors == nil {
			p.VerificationErrors = []string{}
		}
	}
}
