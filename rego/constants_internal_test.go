package rego

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/imagegate/imagegate/providers/facts"
)

// TestFoldConstantsSameDecisions evaluates the bundled ImageReview decision
// for many parameter sets and reviews twice: with the policy as written
// (pure Rego, every rule evaluated per review, as opa test does) and as the
// engine serves it (constant rules folded, the library's Go twins in place:
// reference.parse and the checked fast paths). The decisions must be
// identical, and the plans must actually have been folded.
func TestFoldConstantsSameDecisions(t *testing.T) {
	ctx := t.Context()
	paramSets := map[string]map[string]any{
		"none":      {},
		"signature": {"rules": map[string]any{"signature": map[string]any{"signers": []any{map[string]any{"issuer": stubIssuer, "subject": stubSubject}}}}},
		"signature-platforms": {"rules": map[string]any{
			"signature": map[string]any{"signers": []any{map[string]any{"key": "release"}, map[string]any{"issuer": stubIssuer, "subjectRegExp": "https://github.com/acme/.*"}}, "scope": "platforms"},
			"pinning":   map[string]any{"tagPattern": "v[0-9]+", "allowUntagged": true},
			"registry":  map[string]any{"allowedRepositoryPrefixes": []any{"registry.corp:5000/signed", "docker.io/library"}},
		}},
		"invalid": {"rules": map[string]any{
			"pinning":   map[string]any{"allowLatest": "yes"},
			"signature": map[string]any{"signers": []any{map[string]any{"issuer": "x"}}},
			"naming":    map[string]any{"allowedRepositories": []any{"("}},
		}},
		"namespaces": {
			"exempt": []any{"kube-*"},
			"audit":  []any{"staging"},
			"rules":  map[string]any{"naming": map[string]any{"deniedRepositories": []any{".*/bad"}}},
			"namespaces": []any{
				map[string]any{"names": []any{"prod-*"}, "rules": map[string]any{"pinning": map[string]any{"allowUntagged": false}, "registry": map[string]any{"allowedRegistries": []any{"registry.corp:5000"}}}},
				map[string]any{"names": []any{"prod-*", "dev"}, "rules": map[string]any{"pinning": map[string]any{"enabled": false}}},
				map[string]any{"names": []any{"loose"}, "rules": map[string]any{"registry": map[string]any{"enabled": false}, "freshness": map[string]any{"enabled": "maybe"}}},
			},
			"breakGlass": map[string]any{"namespaces": []any{"dev"}},
		},
	}
	images := [][]any{
		{map[string]any{"image": "nginx"}},
		{map[string]any{"image": "registry.corp:5000/app@sha256:" + sha}, map[string]any{"image": "registry.corp:5000/app:v1@sha256:" + sha}},
		{map[string]any{"image": "docker.io/library/bad:v1@sha256:" + sha}, map[string]any{"image": "UPPER/case"}},
		{map[string]any{"image": "registry.corp:5000/signed:v1@sha256:" + sha}},
		{map[string]any{"image": "registry.corp:5000/signed:v1"}},
		{map[string]any{"image": "registry.corp:5000/signed:v1@sha256:" + sha}, map[string]any{"image": "registry.corp:5000/signed/app:v2@sha256:" + sha}, map[string]any{"image": "registry.corp:5000/app:v1@sha256:" + sha}},
	}
	namespaces := []string{"default", "kube-system", "staging", "prod-eu", "dev", "loose"}
	distinct := map[string]bool{}
	for name, params := range paramSets {
		mods, docs, _, compiler, err := load("", false)
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, written, err := loadWith("", false, false)
		if err != nil {
			t.Fatal(err)
		}
		store := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false))
		data := map[string]any{"params": params, "registries": []any{"registry.corp:5000", "docker.io"}}
		if err := storage.Txn(ctx, store, storage.WriteParams, func(txn storage.Transaction) error {
			return replace(ctx, store, txn, mods, mergeData(docs, data))
		}); err != nil {
			t.Fatal(err)
		}
		folded, paths, err := foldConstants(ctx, compiler, store)
		if err != nil {
			t.Fatalf("%s: foldConstants: %v", name, err)
		}
		if want := []string{"data.imagegate.review.default_plan", "data.imagegate.review.entry_plans", "data.imagegate.review.settings"}; !slices.Equal(paths, want) {
			t.Fatalf("%s: folded %v, want %v", name, paths, want)
		}
		for _, rule := range []string{"pinning", "registry", "signature"} {
			if n := passesCalls(folded.GetRulesExact(ast.MustParseRef("data.imagegate.lib." + rule + ".checked"))); n != 1 {
				t.Fatalf("%s: the served %s.checked calls %s %d times, want 1", name, rule, PassesBuiltin, n)
			}
			if n := passesCalls(written.GetRulesExact(ast.MustParseRef("data.imagegate.lib." + rule + ".checked"))); n != 0 {
				t.Fatalf("%s: the pure-Rego %s.checked calls %s", name, rule, PassesBuiltin)
			}
		}
		for _, p := range paths {
			rules := folded.GetRulesExact(ast.MustParseRef(p))
			if len(rules) != 1 || !rules[0].Body.Equal(ast.NewBody(ast.NewExpr(ast.BooleanTerm(true)))) || !rules[0].Head.Value.IsGround() {
				t.Fatalf("%s: %s is %v after folding, want one rule with a constant value", name, p, rules)
			}
		}
		for _, ns := range namespaces {
			for _, cs := range images {
				input := map[string]any{"spec": map[string]any{"namespace": ns, "containers": cs, "annotations": map[string]any{"alpha.image-policy.k8s.io/break-glass": "true"}}}
				want := decide(t, ctx, written, store, input)
				got := decide(t, ctx, folded, store, input)
				if s, ok := want.(string); ok {
					t.Fatalf("%s, namespace %s, %v: %s", name, ns, cs, s)
				}
				distinct[fmt.Sprint(want)] = true
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s, namespace %s, %v:\nserved     %v\nas written %v", name, ns, cs, got, want)
				}
			}
		}
	}
	// The comparison covers exempt, audit, break-glass, allowed, denied,
	// could-not-look and invalid-parameter decisions, not one repeated answer.
	if len(distinct) < 20 {
		t.Errorf("only %d distinct decisions; the cases do not exercise the policy", len(distinct))
	}
}

// passesCalls counts the calls of imagegate.passes in rules.
func passesCalls(rules []*ast.Rule) int {
	n := 0
	for _, r := range rules {
		ast.WalkExprs(r, func(e *ast.Expr) bool {
			if e.IsCall() && e.Operator().String() == PassesBuiltin {
				n++
			}
			return false
		})
	}
	return n
}

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// stubFacts answers imagegate.facts without a registry (this test compares
// two evaluations of one policy; the facts only need to vary): images
// naming "bad" could not be looked at right now, the others resolve to an
// unsigned single-platform image, except images naming "signed": a
// two-platform index signed keylessly by stubIssuer and stubSubject, whose
// platforms are signed with the key "release" ("signed/app": only the first).
type stubFacts struct{}

const (
	stubIssuer  = "https://token.actions.githubusercontent.com"
	stubSubject = "https://github.com/acme/app/.github/workflows/release.yaml@refs/heads/main"
)

func (stubFacts) Facts(_ context.Context, key string) (*facts.Facts, error) {
	if strings.Contains(key, "bad") {
		return nil, facts.Errorf(facts.CodeUnavailable, key, "registry answered 429")
	}
	if strings.Contains(key, "signed") {
		release := []facts.Signature{{Format: "bundle", Signer: facts.Signer{Kind: "key", Key: "release"}}}
		f := &facts.Facts{Image: key, Digest: "sha256:" + sha,
			Signatures: []facts.Signature{{Format: "bundle", Signer: facts.Signer{Kind: "keyless", Issuer: stubIssuer, Subject: stubSubject}}},
			Platforms: []facts.Platform{
				{OS: "linux", Architecture: "amd64", Digest: "sha256:1", Config: &facts.Config{OS: "linux"}, Signatures: release},
				{OS: "linux", Architecture: "arm64", Digest: "sha256:2", Config: &facts.Config{OS: "linux"}, Signatures: release, VerificationErrors: []string{"legacy signature: bad"}},
			}}
		if strings.Contains(key, "signed/app") {
			f.Platforms[1].Signatures = nil
		}
		return f, nil
	}
	return &facts.Facts{Image: key, Digest: "sha256:" + sha, Config: &facts.Config{OS: "linux", Architecture: "amd64"}}, nil
}

// decide evaluates the bundled decision against compiler.
func decide(t *testing.T, ctx context.Context, compiler *ast.Compiler, store storage.Store, input map[string]any) any {
	t.Helper()
	rs, err := oparego.New(oparego.Query(DefaultQuery), oparego.Compiler(compiler), oparego.Store(store), oparego.Input(input)).Eval(withFacts(ctx, stubFacts{}))
	if err != nil {
		return "error: " + err.Error()
	}
	if len(rs) == 0 {
		return "undefined"
	}
	return rs[0].Expressions[0].Value
}
