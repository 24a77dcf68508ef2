package rego_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	oparego "github.com/open-policy-agent/opa/v1/rego"

	"github.com/imagegate/imagegate/rego"
)

// pureLib evaluates the library's prepare, problems and checked in pure Rego,
// compiled from rego/lib as written (as `opa test` and Gatekeeper run it),
// for the rules with a Go fast path.
type pureLib struct {
	prepare map[string]oparego.PreparedEvalQuery // {problems, prepared} of input.params
	checked map[string]oparego.PreparedEvalQuery // checked(input.image, input.facts, input.prepared)
}

func newPureLib(t testing.TB) *pureLib {
	t.Helper()
	var mods []func(*oparego.Rego)
	err := filepath.WalkDir("lib", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mods = append(mods, oparego.Module(p, string(b)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l := &pureLib{prepare: map[string]oparego.PreparedEvalQuery{}, checked: map[string]oparego.PreparedEvalQuery{}}
	for _, rule := range []string{"pinning", "registry", "signature"} {
		for q, into := range map[string]map[string]oparego.PreparedEvalQuery{
			fmt.Sprintf(`x := {"problems": data.imagegate.lib.%[1]s.problems(input.params), "prepared": data.imagegate.lib.%[1]s.prepare(input.params)}`, rule): l.prepare,
			fmt.Sprintf(`x := data.imagegate.lib.%s.checked(input.image, input.facts, input.prepared)`, rule):                                                   l.checked,
		} {
			opts := append([]func(*oparego.Rego){oparego.Query(q), oparego.Capabilities(libCapabilities(t))}, mods...)
			pq, err := oparego.New(opts...).PrepareForEval(t.Context())
			if err != nil {
				t.Fatalf("preparing %s: %v", q, err)
			}
			into[rule] = pq
		}
	}
	return l
}

// prepared is the rule's prepare(params) and whether problems(params) is
// empty (the review only ever checks with parameters problems accepts).
func (l *pureLib) prepared(t testing.TB, rule string, params any) (any, bool) {
	t.Helper()
	rs, err := l.prepare[rule].Eval(t.Context(), oparego.EvalInput(map[string]any{"params": params}))
	if err != nil {
		t.Fatalf("%s.prepare(%v): %v", rule, params, err)
	}
	if len(rs) != 1 {
		return nil, false
	}
	x := rs[0].Bindings["x"].(map[string]any)
	return x["prepared"], len(x["problems"].([]any)) == 0
}

// reports is whether the Rego checked reports anything: a non-empty set.
// An undefined checked reports nothing, as in the review.
func (l *pureLib) reports(t testing.TB, rule string, image, facts, prepared any) []any {
	t.Helper()
	rs, err := l.checked[rule].Eval(t.Context(), oparego.EvalInput(map[string]any{"image": image, "facts": facts, "prepared": prepared}))
	if err != nil {
		t.Fatalf("%s.checked(%v, %v, %v): %v", rule, image, facts, prepared, err)
	}
	if len(rs) == 0 {
		return nil
	}
	msgs, _ := rs[0].Bindings["x"].([]any)
	return msgs
}

// compare checks rego.Passes against the Rego for one case. Passes may only
// answer true when the Rego reports nothing (true means the review skips the
// Rego). When covered, it must also answer true whenever the Rego reports
// nothing: the fast path is taken for every passing image of that shape.
func compare(t *testing.T, l *pureLib, rule string, image, facts, prepared any, covered bool) (passes bool) {
	t.Helper()
	got, err := rego.Passes(rule, image, facts, prepared)
	if err != nil {
		t.Fatal(err)
	}
	msgs := l.reports(t, rule, image, facts, prepared)
	switch {
	case got && len(msgs) > 0:
		t.Errorf("%s: Go passes image %v, but the Rego reports %v\nfacts %s\nprepared %s", rule, image, msgs, js(facts), js(prepared))
	case !got && len(msgs) == 0 && covered:
		t.Errorf("%s: the Rego reports nothing for image %v, but the Go fast path does not pass it\nfacts %s\nprepared %s", rule, image, js(facts), js(prepared))
	}
	return len(msgs) == 0
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// decodeJSON is v decoded from JSON, as policy input holds it.
func decodeJSON(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}

var (
	nativeImages = []string{
		"nginx", "nginx:latest", "nginx:1.27", "library/nginx:1.27@sha256:" + sha64, "nginx@sha256:" + sha64,
		"Index.Docker.io/nginx:1.27@sha256:" + sha64, "registry-1.docker.io/library/nginx:v2@sha256:" + sha64,
		"ghcr.io/acme/app:v1.2.3@sha256:" + sha64, "ghcr.io/acme/app:latest@sha256:" + sha64, "ghcr.io/acme/app",
		"ghcr.io/acme/app:main", "ghcr.io/acmex/app:v1@sha256:" + sha64, "ghcr.io/acme:v1@sha256:" + sha64,
		"GHCR.io/acme/app:v1@sha256:" + sha64, "localhost:5000/x:1@sha256:" + sha64, "localhost/x:1",
		"registry.corp:5000/team/app:2024.1@sha256:" + sha64, "[::1]:5000/x:v1", "UPPER/case", "", "a@b@c",
		"ghcr.io/acme/app:v1@sha256:short",
	}
	pinningParams = []string{
		`{}`, `{"allowLatest": true}`, `{"requireDigest": false}`, `{"allowUntagged": true}`,
		`{"requireDigest": false, "allowLatest": true, "allowUntagged": true}`, `{"allowLatest": null, "requireDigest": null}`,
		`{"tagPattern": "v?[0-9]+(\\.[0-9]+)*"}`, `{"tagPattern": "1.*|main", "requireDigest": false}`, `{"tagPattern": null}`,
	}
	// Prepared values the review never builds (prepare of parameters that
	// problems refuses, or no prepare at all): Passes need not take the fast
	// path, but must never pass what the Rego reports.
	pinningOdd = []string{
		`null`, `"x"`, `[]`, `{}`, `{"allowLatest": "yes"}`, `{"requireDigest": "no"}`, `{"allowUntagged": 1}`,
		`{"tagPattern": 5}`, `{"tagPattern": "("}`, `{"allowLatest": true, "requireDigest": false, "allowUntagged": true, "tagPattern": "x"}`,
	}
	registryParams = []string{
		`{}`, `{"allowedRegistries": ["*"]}`, `{"allowedRegistries": ["Docker.io", "ghcr.io"]}`, `{"allowedRegistries": ["index.docker.io"]}`,
		`{"allowedRepositoryPrefixes": ["ghcr.io/acme", "docker.io/library/"]}`, `{"allowedRepositoryPrefixes": ["GHCR.io/acme/app/"]}`,
		`{"allowedRegistries": ["localhost:5000", "[::1]:5000"], "allowedRepositoryPrefixes": ["Registry-1.docker.io/library/nginx"]}`,
		`{"allowedRegistries": null, "allowedRepositoryPrefixes": ["registry.corp:5000/team"]}`,
	}
	registryOdd = []string{
		`null`, `{}`, `{"any": "yes"}`, `{"any": false, "registries": ["ghcr.io"]}`, `{"registries": {"a": "ghcr.io"}}`,
		`{"registries": "ghcr.io"}`, `{"prefixes": "ghcr.io/acme"}`, `{"prefixes": ["ghcr.io/acme", 5, null]}`, `{"prefixes": [["ghcr.io"]]}`,
	}
	signatureParams = []string{
		`{"signers": [{"issuer": "` + issuer + `", "subject": "` + subject + `"}]}`,
		`{"signers": [{"issuer": "` + issuer + `", "subjectRegExp": "https://github.com/acme/.*"}], "scope": "platforms"}`,
		`{"signers": [{"issuer": "` + issuer + `", "subjectRegExp": "https://github.com/acme/app/.+@refs/heads/main"}], "scope": "any"}`,
		`{"signers": [{"key": "release"}]}`, `{"signers": [{"key": "other"}, {"key": "release"}], "scope": "any"}`,
		`{"signers": [{"issuer": "` + issuer + `", "subject": "` + subject + `", "extensions": {"githubWorkflowRef": "refs/heads/main"}}]}`,
		`{"signers": [{"issuer": "` + issuer + `", "subject": "` + subject + `", "extensions": {"githubWorkflowRef": "refs/tags/v1"}}], "scope": "platforms"}`,
		`{"signers": [{"issuer": "https://accounts.google.com", "subject": "` + subject + `"}], "count": 1}`,
		// Two distinct signers: a maximum matching, which the Rego decides.
		`{"signers": [{"key": "release"}, {"issuer": "` + issuer + `", "subject": "` + subject + `"}], "count": 2}`,
	}
	signatureOdd = []string{
		`null`, `{}`, `{"count": 1}`, `{"count": 1, "matchers": {}}`, `{"count": 1.0, "matchers": [], "scope": "index"}`,
		`{"count": 1, "scope": 7, "matchers": [{"kind": "key", "key": "release"}]}`,
		`{"count": 1, "matchers": [{"kind": "key", "key": ""}, {"kind": "keyless", "issuer": "` + issuer + `", "subject": null, "subjectRegExp": "(", "extensions": {}}]}`,
		`{"count": 1, "matchers": [{"kind": "keyless", "issuer": "` + issuer + `", "subject": "` + subject + `"}]}`,
		`{"count": 1, "matchers": [{"kind": "keyless", "issuer": "` + issuer + `", "subject": "` + subject + `", "extensions": "x"}]}`,
		`{"count": 1, "matchers": ["x", {"kind": "keyless", "issuer": "` + issuer + `", "subjectRegExp": ".*", "extensions": {"n": 1}}]}`,
	}
	signatureFacts = []string{
		`null`, `"x"`, `{}`, `{"digest": "sha256:1", "signatures": [], "verificationErrors": ["no signatures found"]}`,
		`{"signatures": [{"signer": ` + keyless + `}]}`,
		`{"signatures": [{"signer": {"kind": "keyless", "issuer": "` + issuer + `", "subject": "https://github.com/acme/other/.github/workflows/x.yaml@refs/heads/dev"}}]}`,
		`{"signatures": [{"signer": {"kind": "key", "key": "release"}}, {"signer": {"kind": "key", "key": "old"}}]}`,
		`{"signatures": [{"signer": {"kind": "key", "key": "other"}}], "platforms": [{"digest": "sha256:2", "os": "linux", "architecture": "amd64", "config": {}, "signatures": [{"signer": ` + keyless + `}]}]}`,
		`{"signatures": [], "platforms": [{"os": "linux", "architecture": "amd64", "config": {}, "signatures": [{"signer": ` + keyless + `}]}, {"os": "linux", "architecture": "arm64", "variant": "v8", "config": {}, "signatures": [{"signer": {"kind": "key", "key": "release"}}]}]}`,
		`{"signatures": [], "platforms": [{"os": "linux", "config": {}, "signatures": [{"signer": ` + keyless + `}]}, {"os": "unknown", "signatures": []}, "junk"]}`,
		`{"signatures": [{"signer": ` + keyless + `}], "platforms": [{"config": {}, "signatures": []}]}`,
		`{"signatures": [{"signer": ` + keyless + `}], "platforms": [{"config": null, "signatures": []}, {"config": {}, "signatures": [{"signer": ` + keyless + `}]}]}`,
		`{"signatures": "yes", "platforms": {"a": 1}}`,
		`{"signatures": [1, "x", {"signer": "x"}, {"signer": {"kind": 1}}, {"nosigner": true}, {"signer": {"kind": "keyless", "issuer": "` + issuer + `", "subject": 5}}]}`,
		`{"signatures": [{"signer": {"kind": "keyless", "issuer": "` + issuer + `", "subject": "` + subject + `", "extensions": "x"}}]}`,
		`{"signatures": [{"signer": {"kind": "keyless", "issuer": "` + issuer + `", "subject": "` + subject + `", "extensions": {"githubWorkflowRef": "refs/heads/main", "n": 1.0}}}]}`,
	}
)

const (
	sha64   = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	issuer  = "https://token.actions.githubusercontent.com"
	subject = "https://github.com/acme/app/.github/workflows/release.yaml@refs/heads/main"
	keyless = `{"kind": "keyless", "issuer": "` + issuer + `", "subject": "` + subject + `", "extensions": {"githubWorkflowRef": "refs/heads/main"}}`
)

// TestPassesMatchesRego holds the Go fast path of checked (imagegate.passes,
// which the engine tries before the Rego) to the pure-Rego library: for
// every image, parameter set and facts of the corpora it never passes what
// the Rego reports, and, for the prepared parameters a review uses (and one
// required signer), it passes everything the Rego passes.
func TestPassesMatchesRego(t *testing.T) {
	l := newPureLib(t)
	outcomes := map[string]map[bool]int{}
	tally := func(rule string, pass bool) {
		if outcomes[rule] == nil {
			outcomes[rule] = map[bool]int{}
		}
		outcomes[rule][pass]++
	}
	for rule, sets := range map[string][2][]string{
		"pinning":  {pinningParams, pinningOdd},
		"registry": {registryParams, registryOdd},
	} {
		for _, params := range sets[0] {
			prepared, ok := l.prepared(t, rule, decodeJSON(t, params))
			if !ok {
				t.Fatalf("%s: parameters %s have problems; the corpus wants valid ones", rule, params)
			}
			for _, image := range nativeImages {
				tally(rule, compare(t, l, rule, image, nil, prepared, true))
			}
			tally(rule, compare(t, l, rule, 5, nil, prepared, true))
		}
		for _, prepared := range sets[1] {
			for _, image := range nativeImages {
				compare(t, l, rule, image, nil, decodeJSON(t, prepared), false)
			}
		}
	}
	for _, params := range signatureParams {
		p := decodeJSON(t, params)
		prepared, ok := l.prepared(t, "signature", p)
		if !ok {
			t.Fatalf("signature: parameters %s have problems; the corpus wants valid ones", params)
		}
		for _, f := range signatureFacts {
			tally("signature", compare(t, l, "signature", "ghcr.io/acme/app:v1", decodeJSON(t, f), prepared, oneSigner(prepared)))
		}
	}
	for _, prepared := range signatureOdd {
		for _, f := range signatureFacts {
			compare(t, l, "signature", "ghcr.io/acme/app:v1", decodeJSON(t, f), decodeJSON(t, prepared), false)
		}
	}
	// The corpora exercise both answers of every rule, many times.
	for _, rule := range []string{"pinning", "registry", "signature"} {
		if outcomes[rule][true] < 15 || outcomes[rule][false] < 15 {
			t.Errorf("%s: %d passing and %d reported cases; the corpus should have at least 15 of each", rule, outcomes[rule][true], outcomes[rule][false])
		}
	}
}

// oneSigner is whether prepared signature parameters require one signer,
// the count the fast path handles.
func oneSigner(prepared any) bool {
	p, _ := prepared.(map[string]any)
	n, _ := p["count"].(json.Number)
	f, err := n.Float64()
	return err == nil && f == 1
}

// FuzzPasses compares the fast path with the Rego on arbitrary images,
// parameters and facts: parameters problems accepts go through prepare (and
// must take the fast path whenever the Rego passes, for one signer); others
// are used as the prepared value itself, where only "never pass what the
// Rego reports" holds.
func FuzzPasses(f *testing.F) {
	for _, image := range nativeImages {
		f.Add(uint8(0), image, pinningParams[len(image)%len(pinningParams)], "null")
		f.Add(uint8(1), image, registryParams[len(image)%len(registryParams)], "null")
	}
	for i, params := range signatureParams {
		f.Add(uint8(2), "ghcr.io/acme/app:v1", params, signatureFacts[i%len(signatureFacts)])
	}
	for i, odd := range signatureOdd {
		f.Add(uint8(2), "ghcr.io/acme/app:v1", odd, signatureFacts[(i+3)%len(signatureFacts)])
	}
	l := newPureLib(f)
	rules := []string{"pinning", "registry", "signature"}
	f.Fuzz(func(t *testing.T, r uint8, image, params, factsJSON string) {
		rule := rules[int(r)%len(rules)]
		var p, fv any
		if json.Unmarshal([]byte(params), &p) != nil || json.Unmarshal([]byte(factsJSON), &fv) != nil {
			return // policy input and parameters are JSON
		}
		if prepared, ok := l.prepared(t, rule, p); ok {
			compare(t, l, rule, image, fv, prepared, rule != "signature" || oneSigner(prepared))
			return
		}
		compare(t, l, rule, image, fv, p, false)
	})
}
