package server

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"

	"github.com/imagegate/imagegate/providers/facts"
)

// TestEncodeProviderResponseMatchesEncodingJSON: the hand-written encoder
// of ProviderResponses writes the bytes json.Encoder writes for the same
// response, pre-encoded facts included, and a Facts value is encoded once.
func TestEncodeProviderResponseMatchesEncodingJSON(t *testing.T) {
	f := &facts.Facts{
		Image:     "ghcr.io/acme/app:1@sha256:" + string(bytes.Repeat([]byte("a"), 64)),
		Reference: facts.Reference{Registry: "ghcr.io", Repository: "acme/app", Tag: "1"},
		Digest:    "sha256:" + string(bytes.Repeat([]byte("a"), 64)),
		Config:    &facts.Config{Labels: map[string]string{"org.opencontainers.image.source": "https://x/<a>&b", "é": "\u2028"}},
	}
	f.Normalize()
	enc := factsJSON(f)
	if _, ok := enc.(json.RawMessage); !ok {
		t.Fatalf("factsJSON = %T, want json.RawMessage", enc)
	}
	again := factsJSON(f)
	if &again.(json.RawMessage)[0] != &enc.(json.RawMessage)[0] {
		t.Error("factsJSON encoded the same Facts twice")
	}
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
				{Key: "", Value: f},
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
