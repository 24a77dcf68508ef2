package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"

	"github.com/imagegate/imagegate/providers/lookup"
	"github.com/imagegate/imagegate/server/config"
	"github.com/imagegate/imagegate/test/bench/benchfix"
)

// warmLookup is the server's lookup (NewLookup, as `imagegate serve` builds
// it) with the facts of n signed images in a real in-process registry cached.
func warmLookup(b *testing.B, n int) (*lookup.Service, []string) {
	b.Helper()
	im, _, lk := warmFixture(b, n, nil)
	return lk, im.Keys
}

// warmFixture builds n signed images, the config for them (params as the
// policy parameters) and a lookup with their facts cached; the registry
// must see no request after warming.
func warmFixture(b *testing.B, n int, params map[string]any) (*benchfix.Images, *config.Config, *lookup.Service) {
	b.Helper()
	im := benchfix.Signed(b, n)
	cfg := im.Config(b)
	cfg.Policy.Params = params
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
		if !r.Facts().Signed() {
			b.Fatalf("%s: facts are not signed: %v", r.Key, r.Facts().VerificationErrors)
		}
	}
	im.Reg.ResetCounts()
	b.Cleanup(func() {
		if n := im.Reg.Total(); n != 0 {
			b.Errorf("registry saw %d requests after warming, want 0", n)
		}
	})
	return im, cfg, lk
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
		results := LookupAll(b.Context(), lk, keys[:n])
		kfs := make([]keyFacts, len(results))
		for i := range results {
			items = append(items, externaldata.Item{Key: results[i].Key, Value: factsValue(&results[i], &kfs[i])})
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

// BenchmarkImageReviewHandler: POST /v1/imagereview through the whole router
// (middleware, decode, policy with the signature rule and warm facts,
// encode), without TLS or a network; 1 and 5 signed images.
func BenchmarkImageReviewHandler(b *testing.B) {
	im, cfg, lk := warmFixture(b, 5, benchfix.Params())
	e, err := NewPolicy(b.Context(), cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close(context.Background()) })
	h := New(Deps{Lookup: lk, Policy: e, Logger: slog.New(slog.DiscardHandler)})
	for _, n := range []int{1, 5} {
		var cs []map[string]string
		for _, k := range im.Keys[:n] {
			cs = append(cs, map[string]string{"image": k})
		}
		body, _ := json.Marshal(map[string]any{
			"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview",
			"spec": map[string]any{"containers": cs, "namespace": "prod"},
		})
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/imagereview", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"allowed":true`)) {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
