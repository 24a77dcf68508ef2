package rego

import (
	"bytes"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/lookup"
)

// TestKeyValueFromBase: a key's facts built from its digest's cached Rego
// value plus the key's own fields equal the key's facts converted whole, and
// the digest's value is converted once.
func TestKeyValueFromBase(t *testing.T) {
	d := "sha256:" + string(bytes.Repeat([]byte("c"), 64))
	base := &facts.Facts{
		Digest: d, MediaType: "application/vnd.oci.image.index.v1+json", Size: 99,
		Platforms:  []facts.Platform{{OS: "linux", Architecture: "arm64", Digest: d, Config: &facts.Config{Created: "2026-01-01T00:00:00Z"}}},
		Signatures: []facts.Signature{{Format: "bundle", Digest: d, Signer: facts.Signer{Kind: "key", Key: "release"}}},
	}
	base.Normalize()
	for _, tagDigest := range []string{"", "sha256:" + string(bytes.Repeat([]byte("d"), 64))} {
		k := *base
		k.Image = "ghcr.io/acme/app:1@" + d
		k.Reference = facts.Reference{Registry: "ghcr.io", Repository: "acme/app", Tag: "1", Digest: d}
		k.TagDigest = tagDigest
		got, err := keyValue(k.Image, &lookup.Cached{Base: base, Reference: k.Reference, TagDigest: tagDigest})
		if err != nil {
			t.Fatal(err)
		}
		want, err := toValue(&k)
		if err != nil {
			t.Fatal(err)
		}
		if ast.Compare(got, want) != 0 {
			t.Errorf("tagDigest %q:\n got %v\nwant %v", tagDigest, got, want)
		}
	}
	v1, _ := baseValues.Get(base)
	if _, err := keyValue("x", &lookup.Cached{Base: base}); err != nil {
		t.Fatal(err)
	}
	v2, _ := baseValues.Get(base)
	if v1 == nil || v1 != v2 || v1.obj != v2.obj {
		t.Error("the digest's value was converted more than once")
	}

	// A key's value is composed once, and again when its tag moves.
	ref := facts.Reference{Registry: "ghcr.io", Repository: "acme/app", Tag: "1", Digest: d}
	moved := "sha256:" + string(bytes.Repeat([]byte("e"), 64))
	a, _ := keyValue("ghcr.io/acme/app:1@"+d, &lookup.Cached{Base: base, Reference: ref})
	b, _ := keyValue("ghcr.io/acme/app:1@"+d, &lookup.Cached{Base: base, Reference: ref})
	if a != b {
		t.Error("the same key's value was composed twice")
	}
	m, _ := keyValue("ghcr.io/acme/app:1@"+d, &lookup.Cached{Base: base, Reference: ref, TagDigest: moved})
	if m == a || ast.Compare(m.(ast.Object).Get(ast.StringTerm("tagDigest")).Value, ast.String(moved)) != 0 {
		t.Errorf("after the tag moved, the key's value is %v", m)
	}
}
