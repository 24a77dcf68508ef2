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
	distinct := map[string]bool{}
	for name, params := range reviewParamSets {
		folded, written, store, paths := servedAndWritten(t, params)
		if want := []string{"data.imagegate.review.default_plan", "data.imagegate.review.entry_plans", "data.imagegate.review.settings"}; !slices.Equal(paths, want) {
			t.Fatalf("%s: folded %v, want %v", name, paths, want)
		}
		for _, rule := range []string{"pinning", "registry", "signature"} {
			if n := builtinCalls(PassesBuiltin, folded.GetRulesExact(ast.MustParseRef("data.imagegate.lib."+rule+".checked"))...); n != 1 {
				t.Fatalf("%s: the served %s.checked calls %s %d times, want 1", name, rule, PassesBuiltin, n)
			}
			if n := builtinCalls(PassesBuiltin, written.GetRulesExact(ast.MustParseRef("data.imagegate.lib."+rule+".checked"))...); n != 0 {
				t.Fatalf("%s: the pure-Rego %s.checked calls %s", name, rule, PassesBuiltin)
			}
		}
		if n := builtinCalls(ReviewPassesBuiltin, folded.GetRulesExact(ast.MustParseRef(reviewPackage+"."+reviewRule))...); n != 1 {
			t.Fatalf("%s: the served %s calls %s %d times, want 1", name, reviewRule, ReviewPassesBuiltin, n)
		}
		if n := builtinCalls(ReviewPassesBuiltin, written.GetRulesExact(ast.MustParseRef(reviewPackage+"."+reviewRule))...); n != 0 {
			t.Fatalf("%s: the pure-Rego %s calls %s", name, reviewRule, ReviewPassesBuiltin)
		}
		for _, p := range paths {
			rules := folded.GetRulesExact(ast.MustParseRef(p))
			if len(rules) != 1 || !rules[0].Body.Equal(ast.NewBody(ast.NewExpr(ast.BooleanTerm(true)))) || !rules[0].Head.Value.IsGround() {
				t.Fatalf("%s: %s is %v after folding, want one rule with a constant value", name, p, rules)
			}
		}
		for _, ns := range reviewNamespaces {
			for _, cs := range reviewImages {
				input := reviewInput(ns, cs)
				want := decide(t, ctx, written, store, DefaultQuery, input)
				got := decide(t, ctx, folded, store, DefaultQuery, input)
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

// TestReviewPassesMatchesRego holds the review's Go fast path
// (imagegate.review_passes, which the served no_violations tries first) to
// the pure-Rego review: for every parameter set, namespace and review of
// TestFoldConstantsSameDecisions, it may answer true only when the Rego
// reports no violation; and for the parameter sets whose rules all have Go
// twins (pinning, registry, signature with one signer), it must answer true
// whenever the Rego reports none, so the fast path is taken.
func TestReviewPassesMatchesRego(t *testing.T) {
	ctx := t.Context()
	covered := map[string]bool{"none": true, "signature": true, "signature-platforms": true}
	const fast = "imagegate.review_passes(data.imagegate.review.images, data.imagegate.review.plan, data.imagegate.review.facts)"
	passed, failed := 0, 0
	for name, params := range reviewParamSets {
		folded, written, store, _ := servedAndWritten(t, params)
		for _, ns := range reviewNamespaces {
			for _, cs := range reviewImages {
				input := reviewInput(ns, cs)
				got := decide(t, ctx, folded, store, fast, input)
				violations := decide(t, ctx, written, store, "data.imagegate.review.violations", input)
				msgs, ok := violations.([]any)
				if !ok {
					t.Fatalf("%s, namespace %s, %v: violations = %v", name, ns, cs, violations)
				}
				switch {
				case got == true && len(msgs) > 0:
					t.Errorf("%s, namespace %s, %v: Go passes the review, the Rego reports %v", name, ns, cs, msgs)
				case got != true && len(msgs) == 0 && covered[name]:
					t.Errorf("%s, namespace %s, %v: the Rego reports nothing, the Go fast path answers %v", name, ns, cs, got)
				case got == true:
					passed++
				case len(msgs) > 0:
					failed++
				}
			}
		}
	}
	if passed < 10 || failed < 10 {
		t.Errorf("%d reviews passed the fast path and %d had violations; the cases do not exercise both", passed, failed)
	}
}

// reviewParamSets, reviewNamespaces and reviewImages are the cases that
// compare the served review with the review as written.
var (
	reviewParamSets = map[string]map[string]any{
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
	reviewImages = [][]any{
		{map[string]any{"image": "nginx"}},
		{map[string]any{"image": "registry.corp:5000/app@sha256:" + sha}, map[string]any{"image": "registry.corp:5000/app:v1@sha256:" + sha}},
		{map[string]any{"image": "docker.io/library/bad:v1@sha256:" + sha}, map[string]any{"image": "UPPER/case"}},
		{map[string]any{"image": "registry.corp:5000/signed:v1@sha256:" + sha}},
		{map[string]any{"image": "registry.corp:5000/signed:v1"}},
		{map[string]any{"image": "registry.corp:5000/signed:v1@sha256:" + sha}, map[string]any{"image": "registry.corp:5000/signed/app:v2@sha256:" + sha}, map[string]any{"image": "registry.corp:5000/app:v1@sha256:" + sha}},
		{map[string]any{"image": "registry.corp:5000/signed:v2@sha256:" + sha}, map[string]any{"image": "docker.io/library/bad:v1@sha256:" + sha}},
	}
	reviewNamespaces = []string{"default", "kube-system", "staging", "prod-eu", "dev", "loose"}
)

func reviewInput(ns string, containers []any) map[string]any {
	return map[string]any{"spec": map[string]any{"namespace": ns, "containers": containers, "annotations": map[string]any{"alpha.image-policy.k8s.io/break-glass": "true"}}}
}

// servedAndWritten compiles the bundled policy twice with params: as the
// engine serves it (Go twins, constant rules folded; paths are the folded
// rules) and as written (pure Rego), over one store.
func servedAndWritten(t *testing.T, params map[string]any) (served, written *ast.Compiler, store storage.Store, paths []string) {
	t.Helper()
	ctx := t.Context()
	mods, docs, _, compiler, err := load("", false)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, written, err = loadWith("", false, false)
	if err != nil {
		t.Fatal(err)
	}
	store = inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false))
	data := map[string]any{"params": params, "registries": []any{"registry.corp:5000", "docker.io"}}
	if err := storage.Txn(ctx, store, storage.WriteParams, func(txn storage.Transaction) error {
		return replace(ctx, store, txn, mods, mergeData(docs, data))
	}); err != nil {
		t.Fatal(err)
	}
	served, paths, err = foldConstants(ctx, compiler, store)
	if err != nil {
		t.Fatalf("foldConstants: %v", err)
	}
	return served, written, store, paths
}

// builtinCalls counts the calls of builtin in nodes (modules, rules): as
// expressions and as terms.
func builtinCalls[T any](builtin string, nodes ...T) int {
	n := 0
	for _, x := range nodes {
		ast.NewGenericVisitor(func(v any) bool {
			switch v := v.(type) {
			case *ast.Expr:
				if v.IsCall() && v.Operator().String() == builtin {
					n++
				}
			case ast.Call:
				if v[0].String() == builtin {
					n++
				}
			}
			return false
		}).Walk(x)
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

// decide evaluates query (the bundled decision, or another expression)
// against compiler.
func decide(t *testing.T, ctx context.Context, compiler *ast.Compiler, store storage.Store, query string, input map[string]any) any {
	t.Helper()
	rs, err := oparego.New(oparego.Query(query), oparego.Compiler(compiler), oparego.Store(store), oparego.Input(input)).Eval(withFacts(ctx, stubFacts{}))
	if err != nil {
		return "error: " + err.Error()
	}
	if len(rs) == 0 {
		return "undefined"
	}
	return rs[0].Expressions[0].Value
}
