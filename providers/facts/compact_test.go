package facts

import (
	"encoding/json"
	"testing"
	"unsafe"
)

// TestCompact: Compact changes nothing Facts say or how they encode, and
// shares the strings many images have in common.
func TestCompact(t *testing.T) {
	mk := func() *Facts {
		created := string([]byte("2026-01-01T00:00:00Z"))
		f := &Facts{
			Digest:    "sha256:aa",
			MediaType: string([]byte("application/vnd.oci.image.manifest.v1+json")),
			Config: &Config{Created: created, User: string([]byte("65532")), OS: string([]byte("linux")), Architecture: string([]byte("amd64")),
				Labels: LabelsOf(map[string]string{string([]byte("org.opencontainers.image.created")): string([]byte(created)), "a<b": "x&y"})},
			Platforms:  []Platform{{OS: string([]byte("linux")), Architecture: "arm64", Variant: "v8", Config: &Config{Labels: Labels{}}}},
			Signatures: []Signature{{Format: string([]byte("bundle")), Signer: Signer{Kind: "keyless", Issuer: string([]byte("https://issuer"))}}},
		}
		f.Normalize()
		return f
	}
	a, b := mk(), mk()
	before, _ := json.Marshal(a)
	a.Compact()
	b.Compact()
	after, _ := json.Marshal(a)
	if string(before) != string(after) {
		t.Errorf("Compact changed the encoding:\n%s\n%s", before, after)
	}
	same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	if !same(a.MediaType, b.MediaType) || !same(a.Config.OS, b.Config.OS) || !same(a.Config.User, b.Config.User) || !same(a.Signatures[0].Signer.Issuer, b.Signatures[0].Signer.Issuer) || !same(a.Config.OS, a.Platforms[0].OS) {
		t.Error("Compact: shared strings not shared between two Facts")
	}
	if v := a.Config.Labels.Get("org.opencontainers.image.created"); !same(v, a.Config.Created) {
		t.Error("Compact: the created label does not share the created string")
	}
	for _, x := range a.Config.Labels {
		for _, y := range b.Config.Labels {
			if x.Key == y.Key && !same(x.Key, y.Key) {
				t.Errorf("label key %q not shared", x.Key)
			}
		}
	}
}

// TestInternBounded: the table stops growing at its cap and answers the
// string itself past it; long strings are not kept.
func TestInternBounded(t *testing.T) {
	interned.mu.Lock()
	saved := interned.m
	interned.m = nil
	interned.mu.Unlock()
	t.Cleanup(func() {
		interned.mu.Lock()
		interned.m = saved
		interned.mu.Unlock()
	})
	for i := 0; i < maxInterned+100; i++ {
		s := string(rune('a'+i%26)) + string(rune(i))
		if got := intern(s); got != s {
			t.Fatalf("intern(%q) = %q", s, got)
		}
	}
	interned.mu.RLock()
	n := len(interned.m)
	interned.mu.RUnlock()
	if n > maxInterned {
		t.Errorf("intern table holds %d strings, cap %d", n, maxInterned)
	}
	long := string(make([]byte, maxInternedLen+1))
	if got := intern(long); unsafe.StringData(got) != unsafe.StringData(long) {
		t.Error("a long string was copied into the table")
	}
}
