package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"

	"github.com/imagegate/imagegate/providers/lookup"
	"github.com/imagegate/imagegate/test/bench/benchfix"
)

// warmLookup is the server's lookup (NewLookup, as `imagegate serve` builds
// it) with the facts of n signed images in a real in-process registry cached.
func warmLookup(b *testing.B, n int) (*lookup.Service, []string) {
	b.Helper()
	im := benchfix.Signed(b, n)
	cfg := im.Config(b)
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	lk, err := NewLookup(cfg, nil, 1)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range LookupAll(b.Context(), lk, im.Keys) {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
		if !r.Facts.Signed() {
			b.Fatalf("%s: facts are not signed: %v", r.Key, r.Facts.VerificationErrors)
		}
	}
	im.Reg.ResetCounts()
	b.Cleanup(func() {
		if n := im.Reg.Total(); n != 0 {
			b.Errorf("registry saw %d requests after warming, want 0", n)
		}
	})
	return lk, im.Keys
}

var batches = []int{1, 10, 100}

// BenchmarkDecodeProviderRequest: DecodeProviderRequest on Gatekeeper's
// request body.
func BenchmarkDecodeProviderRequest(b *testing.B) {
	const dgst = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	for _, n := range batches {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("registry.corp.example:5000/team/app-%03d:v1@%s", i, dgst)
		}
		body, _ := json.Marshal(externaldata.NewProviderRequest(keys))
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := DecodeProviderRequest(body, 1000); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discard is a ResponseWriter that keeps nothing.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkEncodeProviderResponse: writeProviderResponse of a
// ProviderResponse whose values are real facts of signed images (a verified
// keyless signature each), as the handler writes warm keys: each key's own
// fields, then its digest's facts, encoded once.
func BenchmarkEncodeProviderResponse(b *testing.B) {
	lk, keys := warmLookup(b, 100)
	for _, n := range batches {
		var items []externaldata.Item
		for _, r := range LookupAll(b.Context(), lk, keys[:n]) {
			items = append(items, externaldata.Item{Key: r.Key, Value: factsValue(r.Facts, r.Base)})
		}
		resp := providerResponse(items)
		var size bytes.Buffer
		_ = json.NewEncoder(&size).Encode(resp)
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size.Len()))
			w := &discard{h: http.Header{}}
			for b.Loop() {
				writeProviderResponse(w, http.StatusOK, resp)
			}
		})
	}
}

// BenchmarkFactsHandler: POST /v1/externaldata/facts through the whole
// router (middleware, metrics, decode, warm lookups, encode), without TLS
// or a network.
func BenchmarkFactsHandler(b *testing.B) {
	lk, keys := warmLookup(b, 100)
	h := New(Deps{Lookup: lk})
	for _, n := range batches {
		body, _ := json.Marshal(externaldata.NewProviderRequest(keys[:n]))
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/externaldata/facts", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
