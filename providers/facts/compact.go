package facts

import (
	"strings"
	"sync"
)

// Compact makes f cheaper to keep in a cache without changing what it says
// or how it encodes: strings that many images share (media types, os,
// architecture, variant, user, label keys, signature formats and issuers)
// become one shared copy each, and a label value equal to the config's
// created time (org.opencontainers.image.created, typically) shares that
// string. f must not be in use by others yet.
func (f *Facts) Compact() {
	f.MediaType = intern(f.MediaType)
	compactConfig(f.Config)
	compactSignatures(f.Signatures, f.Attestations)
	for i := range f.Platforms {
		p := &f.Platforms[i]
		p.OS, p.Architecture, p.Variant, p.OSVersion = intern(p.OS), intern(p.Architecture), intern(p.Variant), intern(p.OSVersion)
		p.MediaType = intern(p.MediaType)
		compactConfig(p.Config)
		compactSignatures(p.Signatures, p.Attestations)
	}
}

func compactConfig(c *Config) {
	if c == nil {
		return
	}
	c.User, c.OS, c.Architecture, c.Variant = intern(c.User), intern(c.OS), intern(c.Architecture), intern(c.Variant)
	for i := range c.Labels {
		l := &c.Labels[i]
		l.Key = intern(l.Key)
		if l.Value == c.Created {
			l.Value = c.Created
		}
	}
}

func compactSignatures(sigs []Signature, atts []Attestation) {
	for i := range sigs {
		s := &sigs[i]
		s.Format, s.Signer.Kind, s.Signer.Issuer = intern(s.Format), intern(s.Signer.Kind), intern(s.Signer.Issuer)
	}
	for i := range atts {
		a := &atts[i]
		a.Format, a.PredicateType = intern(a.Format), intern(a.PredicateType)
		a.Signer.Kind, a.Signer.Issuer = intern(a.Signer.Kind), intern(a.Signer.Issuer)
	}
}

// The intern table keeps the first maxInterned distinct strings of at most
// maxInternedLen bytes it is given, for the process's life: a few hundred
// kilobytes at most. Strings past the cap are kept as they are (correct,
// not shared).
const (
	maxInterned    = 4096
	maxInternedLen = 128
)

var interned struct {
	mu sync.RWMutex
	m  map[string]string
}

// intern returns the table's copy of s, adding s while there is room.
func intern(s string) string {
	if s == "" || len(s) > maxInternedLen {
		return s
	}
	interned.mu.RLock()
	v, ok := interned.m[s]
	interned.mu.RUnlock()
	if ok {
		return v
	}
	interned.mu.Lock()
	defer interned.mu.Unlock()
	if v, ok := interned.m[s]; ok {
		return v
	}
	if interned.m == nil {
		interned.m = make(map[string]string)
	}
	if len(interned.m) >= maxInterned {
		return s
	}
	s = strings.Clone(s) // not a window into a larger buffer
	interned.m[s] = s
	return s
}
