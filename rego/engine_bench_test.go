package rego_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/rego"
	"github.com/imagegate/imagegate/server"
	"github.com/imagegate/imagegate/test/bench/benchfix"
)

// failFacts fails the benchmark if policy asks for facts.
type failFacts struct{ b *testing.B }

func (f failFacts) Facts(_ context.Context, key string) (*facts.Facts, error) {
	f.b.Errorf("policy asked for facts of %q; this policy needs none", key)
	return nil, errors.New("unexpected")
}

// reviewInput is the document policy sees for an ImageReview of images.
func reviewInput(b *testing.B, images []string) map[string]any {
	b.Helper()
	var cs []map[string]string
	for _, i := range images {
		cs = append(cs, map[string]string{"image": i})
	}
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview",
		"spec":   map[string]any{"containers": cs, "namespace": "prod"},
		"status": map[string]any{"allowed": false},
	})
	_, input, err := server.DecodeImageReview(body)
	if err != nil {
		b.Fatal(err)
	}
	return input
}

func decideAllowed(b *testing.B, e *rego.Engine, input map[string]any, f rego.Facts) {
	res, err := e.Decide(context.Background(), input, f)
	if err != nil {
		b.Fatal(err)
	}
	d, _ := res.(map[string]any)
	if d["allowed"] != true {
		b.Fatalf("decision = %v, want allowed", res)
	}
}

// BenchmarkDecide: Engine.Decide of the bundled ImageReview entrypoint, built
// as `imagegate serve` builds it (server.NewPolicy, server.NewLookup), for 1
// and 5 signed, digest-pinned images: (a) default params, which need no
// facts; (b) the signature rule, with facts from a lookup warmed against a
// real in-process registry (no registry request while measuring).
func BenchmarkDecide(b *testing.B) {
	im := benchfix.Signed(b, 5)
	logger := slog.New(slog.DiscardHandler)
	for _, pc := range []struct {
		desc   string
		params map[string]any
	}{
		{desc: "default"},
		{desc: "signature", params: benchfix.Params()},
	} {
		cfg := im.Config(b)
		cfg.Policy.Params = pc.params
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
		e, err := server.NewPolicy(b.Context(), cfg, logger, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { e.Close(context.Background()) })
		var f rego.Facts = failFacts{b}
		if pc.params != nil {
			lk, err := server.NewLookup(cfg, nil, 1)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range server.LookupAll(b.Context(), lk, im.Keys) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
			f = lk
		}
		for _, n := range []int{1, 5} {
			input := reviewInput(b, im.Keys[:n])
			decideAllowed(b, e, input, f)
			im.Reg.ResetCounts()
			b.Run(fmt.Sprintf("%s/containers=%d", pc.desc, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					decideAllowed(b, e, input, f)
				}
			})
			if got := im.Reg.Total(); got != 0 {
				b.Errorf("registry saw %d requests while deciding with warm facts, want 0", got)
			}
		}
	}
}
