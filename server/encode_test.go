package server

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/lookup"
)

// baseAndKey is a digest's facts as the lookup caches them (no per-key
// fields) and one key's facts composed from them.
func baseAndKey(tagDigest string) (base, key *facts.Facts) {
	d := "sha256:" + string(bytes.Repeat([]byte("a"), 64))
	base = &facts.Facts{
		Digest:    d,
		MediaType: "application/vnd.oci.image.manifest.v1+json",
		Size:      1234,
		Config:    &facts.Config{Labels: facts.LabelsOf(map[string]string{"org.opencontainers.image.source": "https://x/<a>&b", "é": "\u2028"})},
		Signatures: []facts.Signature{{Format: "bundle", Digest: d,
			Signer: facts.Signer{Kind: "keyless", Issuer: "https://issuer", Subject: "ci@example.com"}}},
		VerificationErrors: []string{`"quoted" <b>`},
	}
	base.Normalize()
	k := *base
	k.Image = "ghcr.io/acme/app:1@" + d
	k.Reference = facts.Reference{Registry: "ghcr.io", Repository: "acme/app", Tag: "1", Digest: d}
	k.TagDigest = tagDigest
	return base, &k
}

// TestFactsValueSplicesPerKeyFields: a warm key's facts are written as its
// own fields followed by its digest's JSON, encoded once per digest; the
// result is the same JSON value json.Marshal gives for the key's facts.
func TestFactsValueSplicesPerKeyFields(t *testing.T) {
	for _, tagDigest := range []string{"", "sha256:" + string(bytes.Repeat([]byte("b"), 64))} {
		base, key := baseAndKey(tagDigest)
		res := lookup.CachedResult(key.Image, lookup.Cached{Base: base, Reference: key.Reference, TagDigest: key.TagDigest})
		v := factsValue(&res, &keyFacts{})
		kf, ok := v.(*keyFacts)
		if !ok {
			t.Fatalf("factsValue = %T, want *keyFacts", v)
		}
		again := factsValue(&res, &keyFacts{}).(*keyFacts)
		if &again.rest[0] != &kf.rest[0] {
			t.Error("the digest's facts were encoded twice")
		}
		var got, want any
		if err := json.Unmarshal(appendKeyFacts(nil, kf), &got); err != nil {
			t.Fatalf("spliced JSON does not parse: %v\n%s", err, appendKeyFacts(nil, kf))
		}
		raw, _ := json.Marshal(key)
		_ = json.Unmarshal(raw, &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("tagDigest %q: spliced\n%s\nwant the value of\n%s", tagDigest, appendKeyFacts(nil, kf), raw)
		}
		fetched := lookup.FetchedResult(key.Image, key, nil)
		if enc := factsValue(&fetched, &keyFacts{}); reflect.TypeOf(enc) != reflect.TypeOf(json.RawMessage(nil)) {
			t.Errorf("without a base: %T, want the key's own JSON", enc)
		}
	}
}

// TestEncodeProviderResponseMatchesEncodingJSON: the hand-written encoder
// of ProviderResponses writes the bytes json.Encoder writes for the same
// response (raw JSON values, strings, errors, systemError, omitempty).
func TestEncodeProviderResponseMatchesEncodingJSON(t *testing.T) {
	_, key := baseAndKey("")
	raw, _ := json.Marshal(key)
	enc := json.RawMessage(raw)
	for _, tc := range []struct {
		name string
		resp externaldata.ProviderResponse
	}{
		{"empty", providerResponse(nil)},
		{"system error", func() externaldata.ProviderResponse {
			r := providerResponse(nil)
			r.Response.SystemError = `bad_request: "x" <y> & z`
			return r
		}()},
		{"facts, errors, digest strings", func() externaldata.ProviderResponse {
			r := providerResponse([]externaldata.Item{
				{Key: "ghcr.io/acme/app:1", Value: enc},
				{Key: "a<b>&c", Error: "not_found: tag \"1\" <missing>"},
				{Key: "docker.io/library/x:1", Value: "docker.io/library/x@sha256:00"},
				{Key: "", Value: key},
				{Key: "k"},
			})
			r.Response.SystemError = "unavailable: 1 of 6 keys"
			return r
		}()},
		{"no apiVersion, not idempotent", externaldata.ProviderResponse{Response: externaldata.Response{Items: []externaldata.Item{{Key: "k", Value: enc}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want bytes.Buffer
			if err := json.NewEncoder(&want).Encode(tc.resp); err != nil {
				t.Fatal(err)
			}
			if got := appendProviderResponse(nil, tc.resp); !bytes.Equal(got, want.Bytes()) {
				t.Errorf("appendProviderResponse:\n%s\nencoding/json:\n%s", got, want.Bytes())
			}
		})
	}
}
