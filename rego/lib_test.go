package rego_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/open-policy-agent/opa/v1/ast"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/rego"
)

// libCapabilities loads rego/capabilities.json, the capabilities every
// bundled and user policy is checked against.
func libCapabilities(t testing.TB) *ast.Capabilities {
	t.Helper()
	caps, err := ast.LoadCapabilitiesFile("capabilities.json")
	if err != nil {
		t.Fatalf("loading capabilities.json: %v", err)
	}
	return caps
}

// runRegoTests runs the Rego tests of paths as `opa test --capabilities`
// does, compiling strictly, and returns the results.
func runRegoTests(t *testing.T, caps *ast.Capabilities, paths ...string) []*tester.Result {
	t.Helper()
	modules, store, err := tester.Load(paths, nil)
	if err != nil {
		t.Fatalf("loading %v: %v", paths, err)
	}
	compiler := ast.NewCompiler().
		WithCapabilities(caps).
		WithStrict(true).
		WithEnablePrintStatements(true).
		WithUseTypeCheckAnnotations(true)
	ch, err := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(modules).
		CapturePrintOutput(true).
		RunTests(t.Context(), nil)
	if err != nil {
		t.Fatalf("running the Rego tests of %v: %v", paths, err)
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	return results
}

// TestRegoLibrary runs every _test.rego of rego/lib and the bundled
// entrypoint (rego/imagegate), the gate `make test-rego`
// also applies with the opa binary.
func TestRegoLibrary(t *testing.T) {
	results := runRegoTests(t, libCapabilities(t), "lib", "imagegate")
	tests, cases := 0, 0
	for _, r := range results {
		tests++
		for range r.SubResults.Iter {
			cases++
		}
		switch {
		case r.Error != nil:
			t.Errorf("%s.%s: error: %v", r.Package, r.Name, r.Error)
		case r.Skip:
			t.Logf("%s.%s: skipped", r.Package, r.Name)
		case r.Fail:
			t.Errorf("%s.%s: FAIL (%s:%d)\n%s%s", r.Package, r.Name, r.Location.File, r.Location.Row, r.SubResults, r.Output)
		}
	}
	if tests == 0 {
		t.Fatal("no Rego tests ran under rego/lib")
	}
	t.Logf("%d Rego tests, %d table cases", tests, cases)
}

// TestCapabilities checks that rego/capabilities.json is OPA's own minus the
// builtins no imagegate policy may call, plus the two imagegate and
// Gatekeeper provide, and that a test can mock the latter (opa test rejects
// external_data without them: open-policy-agent/opa#5956).
func TestCapabilities(t *testing.T) {
	caps := libCapabilities(t)
	have := map[string]bool{}
	for _, b := range caps.Builtins {
		have[b.Name] = true
	}
	for _, n := range []string{"http.send", "net.lookup_ip_addr", "opa.runtime"} {
		if have[n] {
			t.Errorf("capabilities.json declares %s; it must not", n)
		}
	}
	for _, n := range []string{"external_data", "imagegate.facts", "time.now_ns", "regex.match"} {
		if !have[n] {
			t.Errorf("capabilities.json lacks %s", n)
		}
	}
	// Everything else is this OPA's own set (the test binary's also holds
	// builtins registered by Go code: imagegate.facts, and the engine's own
	// Go twins of library rules, which policy authors do not call).
	want := map[string]bool{"external_data": true, "imagegate.facts": true, "imagegate.parse_reference": true, "imagegate.passes": true, "imagegate.review_passes": true}
	for _, b := range ast.CapabilitiesForThisVersion().Builtins {
		want[b.Name] = true
	}
	delete(want, "http.send")
	delete(want, "net.lookup_ip_addr")
	delete(want, "opa.runtime")
	for n := range want {
		if !have[n] {
			t.Errorf("capabilities.json lacks %s, which this OPA has: regenerate it from `opa capabilities --current` of the pinned OPA", n)
		}
	}
	for n := range have {
		if !want[n] {
			t.Errorf("capabilities.json declares %s, which this OPA lacks", n)
		}
	}

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "uses.rego"), `package caps

facts := imagegate.facts(["ghcr.io/acme/app:1"])

responses := external_data({"provider": "imagegate-facts", "keys": ["ghcr.io/acme/app:1"]}).responses
`)
	writeFile(t, filepath.Join(dir, "uses_test.rego"), `package caps_test

import data.caps

# Mock with functions: the opa binary has no implementation of either
# builtin, and replacing one by a value still evaluates it ("unsupported
# built-in"); replacing it by a function does not.
mock_facts(images) := {image: {"ok": true} | some image in images}

mock_external_data(req) := {"responses": [[key, {}] | some key in req.keys], "errors": [], "status_code": 200, "system_error": ""}

test_mocked if {
	caps.facts == {"ghcr.io/acme/app:1": {"ok": true}} with imagegate.facts as mock_facts
	caps.responses == [["ghcr.io/acme/app:1", {}]] with external_data as mock_external_data
}
`)
	results := runRegoTests(t, caps, dir)
	if len(results) != 1 || !results[0].Pass() {
		for _, r := range results {
			t.Errorf("mocking external_data and imagegate.facts: %s %v", r, r.Error)
		}
		if len(results) == 0 {
			t.Error("mocking external_data and imagegate.facts: no test ran")
		}
	}

	for _, call := range []string{
		`http.send({"method": "get", "url": "https://example.com"})`,
		`net.lookup_ip_addr("example.com")`,
		`opa.runtime()`,
	} {
		mod, err := ast.ParseModuleWithOpts("bad.rego", "package bad\n\nx := "+call+"\n", ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("parsing a policy that calls %s: %v", call, err)
		}
		c := ast.NewCompiler().WithCapabilities(caps)
		c.Compile(map[string]*ast.Module{"bad.rego": mod})
		if !c.Failed() || !strings.Contains(c.Errors.Error(), "undefined function") {
			t.Errorf("compiling a policy that calls %s: errors = %v, want undefined function", call, c.Errors)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

var (
	dgst    = "sha256:" + strings.Repeat("a1", 32)
	dgst384 = "sha384:" + strings.Repeat("b2", 48)
)

// referenceCorpus is checked against providers/registry.Parse (what facts
// report) and, on the references both accept, against go-containerregistry.
var referenceCorpus = []struct {
	desc  string
	key   string
	valid bool
	// stricter marks keys the Rego parser refuses although
	// providers/registry.Parse accepts them: the distribution grammar's tag
	// ([\w][\w.-]{0,127}) cannot start with '.' or '-', go-containerregistry's
	// tag check only looks at the character set. Refusing is fail-closed.
	stricter bool
	// ggcrLaxer marks keys providers/registry.Parse (and Rego) refuse
	// deliberately although go-containerregistry's weak validation accepts
	// them: it checks a repository's character set only and a registry only
	// for URL syntax.
	ggcrLaxer bool
}{
	{desc: "docker hub short name", key: "nginx", valid: true},
	{desc: "short name with tag", key: "nginx:1.25", valid: true},
	{desc: "short name with digest", key: "nginx@" + dgst, valid: true},
	{desc: "short name with tag and digest", key: "nginx:1.25@" + dgst, valid: true},
	{desc: "docker hub user namespace", key: "bitnami/redis:7", valid: true},
	{desc: "docker.io without library", key: "docker.io/nginx:1", valid: true},
	{desc: "docker.io with library", key: "docker.io/library/nginx", valid: true},
	{desc: "index.docker.io alias", key: "index.docker.io/library/nginx:1", valid: true},
	{desc: "index.docker.io short", key: "index.docker.io/nginx", valid: true},
	{desc: "registry-1.docker.io alias", key: "registry-1.docker.io/nginx:1", valid: true},
	{desc: "upper-case docker hub alias", key: "Docker.IO/nginx:1", valid: true},
	{desc: "upper-case registry", key: "GHCR.io/acme/app:v1", valid: true},
	{desc: "docker.io with a port is another registry", key: "docker.io:443/nginx:1", valid: true},
	{desc: "upper-case tag", key: "ghcr.io/x:V1.0-RC", valid: true},
	{desc: "nested repository", key: "ghcr.io/a/b/c/d:1", valid: true},
	{desc: "separators", key: "ghcr.io/a_b/c__d/e-f/g.h/i--j:tag.1-2_3", valid: true},
	{desc: "localhost", key: "localhost/x", valid: true},
	{desc: "localhost with port", key: "localhost:5000/a/b:t", valid: true},
	{desc: "host:port without a dot", key: "registry:5000/repo@" + dgst, valid: true},
	{desc: "host:port with tag", key: "registry.corp.example:5000/team/app:1.0", valid: true},
	{desc: "ipv4 with port and digest", key: "127.0.0.1:5000/x@" + dgst, valid: true},
	{desc: "ipv4 without port", key: "10.0.0.1/x:1", valid: true},
	{desc: "bracketed ipv6", key: "[::1]:5000/x:1", valid: true},
	{desc: "tag and digest", key: "ghcr.io/acme/app:1.4@" + dgst, valid: true},
	{desc: "port, tag and digest", key: "reg.example:5000/app:1.4@" + dgst, valid: true},
	{desc: "sha384 digest", key: "ghcr.io/x@" + dgst384, valid: true},
	{desc: "128-character tag", key: "ghcr.io/x:" + strings.Repeat("t", 128), valid: true},
	{desc: "tag starting with underscore", key: "ghcr.io/x:_1", valid: true},
	{desc: "first component without dot or colon is a docker hub path", key: "ghcr/x:1", valid: true},
	{desc: "registry-looking path on another registry", key: "evil.example/ghcr.io/acme/app:1", valid: true},
	{desc: "lone host name is a docker hub repository", key: "ghcr.io", valid: true},
	{desc: "underscore in host", key: "my_registry.local/x:1", valid: true},
	{desc: "255-character repository", key: "ghcr.io/" + strings.Repeat("a", 255), valid: true},

	{desc: "empty", key: ""},
	{desc: "upper-case repository", key: "ghcr.io/Acme/app:1"},
	{desc: "upper-case short name", key: "Nginx"},
	{desc: "upper-case localhost is not a registry", key: "LOCALHOST/x"},
	{desc: "two digests", key: "ghcr.io/x@" + dgst + "@" + dgst},
	{desc: "empty digest", key: "ghcr.io/x@"},
	{desc: "short digest", key: "ghcr.io/x@sha256:abc"},
	{desc: "upper-case digest hex", key: "ghcr.io/x@sha256:" + strings.Repeat("A", 64)},
	{desc: "unknown digest algorithm", key: "ghcr.io/x@md5:" + strings.Repeat("a", 32)},
	{desc: "empty tag", key: "nginx:"},
	{desc: "empty tag before digest", key: "nginx:@" + dgst},
	{desc: "two tags", key: "a:b:c"},
	{desc: "digest without repository", key: "@" + dgst},
	{desc: "registry only", key: "ghcr.io/"},
	{desc: "tag too long", key: "ghcr.io/x:" + strings.Repeat("t", 129)},
	{desc: "tag with plus", key: "ghcr.io/x:1+build"},
	{desc: "url scheme", key: "https://ghcr.io/x"},
	{desc: "space", key: "ghcr.io/acme/app :1"},
	{desc: "trailing newline", key: "nginx\n"},
	{desc: "non-ascii repository", key: "ghcr.io/caf\u00e9"},
	{desc: "repository too long", key: "ghcr.io/" + strings.Repeat("a", 256)},
	{desc: "reference too long", key: "ghcr.io/" + strings.Repeat("a/", 520) + "x"},
	{desc: "empty path component", key: "a//b", ggcrLaxer: true},
	{desc: "leading slash", key: "/a", ggcrLaxer: true},
	{desc: "trailing slash", key: "ghcr.io/a/", ggcrLaxer: true},
	{desc: "component starts with separator", key: "ghcr.io/_a", ggcrLaxer: true},
	{desc: "component ends with separator", key: "ghcr.io/a-", ggcrLaxer: true},
	{desc: "double dot", key: "ghcr.io/a..b", ggcrLaxer: true},
	{desc: "empty label in registry", key: "ghcr..io/x", ggcrLaxer: true},
	{desc: "registry label ends with dash", key: "ghcr-.io/x", ggcrLaxer: true},
	{desc: "empty port", key: "ghcr.io:/x", ggcrLaxer: true},
	{desc: "non-ascii registry", key: "r\u00e9g.example/x", ggcrLaxer: true},
	{desc: "tag starting with a dot", key: "ghcr.io/x:.1", stricter: true},
	{desc: "tag starting with a dash", key: "ghcr.io/x:-1", stricter: true},
}

// parsed is imagegate.lib.reference.parse's result (the Go twin's type).
type parsed = rego.ParsedReference

func prepareParse(t testing.TB) oparego.PreparedEvalQuery {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("lib", "reference", "reference.rego"))
	if err != nil {
		t.Fatal(err)
	}
	pq, err := oparego.New(
		oparego.Query("data.imagegate.lib.reference.parse(input)"),
		oparego.Module("reference.rego", string(src)),
		oparego.Capabilities(libCapabilities(t)),
		oparego.StrictBuiltinErrors(true),
	).PrepareForEval(t.Context())
	if err != nil {
		t.Fatalf("preparing reference.parse: %v", err)
	}
	return pq
}

func regoParse(t testing.TB, pq oparego.PreparedEvalQuery, key string) parsed {
	t.Helper()
	rs, err := pq.Eval(t.Context(), oparego.EvalInput(key))
	if err != nil {
		t.Fatalf("reference.parse(%q): %v", key, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("reference.parse(%q) is undefined", key)
	}
	var p parsed
	b, err := json.Marshal(rs[0].Expressions[0].Value)
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if err != nil {
		t.Fatalf("reference.parse(%q) = %v: %v", key, rs[0].Expressions[0].Value, err)
	}
	return p
}

// TestReferenceParserMatchesGo checks the pure-Rego parser, which naming,
// pinning and registry rules use without facts, against the Go parser that
// names images in facts (providers/registry.Parse: go-containerregistry with
// weak validation, plus the distribution grammar where ggcr is lax, Docker
// Hub aliases folded and the registry lower-cased), and, where both accept a
// key, against go-containerregistry's name.ParseReference itself.
func TestReferenceParserMatchesGo(t *testing.T) {
	if len(referenceCorpus) < 40 {
		t.Fatalf("the corpus has %d references, want at least 40", len(referenceCorpus))
	}
	pq := prepareParse(t)
	for _, tc := range referenceCorpus {
		t.Run(tc.desc, func(t *testing.T) {
			got := regoParse(t, pq, tc.key)
			ref, goErr := registry.Parse(tc.key, nil)
			goValid := goErr == nil

			if got.Valid != tc.valid {
				t.Fatalf("reference.parse(%q).valid = %v (error %q), want %v", tc.key, got.Valid, got.Error, tc.valid)
			}
			if !got.Valid && got.Error == "" {
				t.Errorf("reference.parse(%q) is invalid without an error", tc.key)
			}
			if tc.stricter {
				if !goValid {
					t.Errorf("registry.Parse(%q) failed (%v); the case is marked stricter-than-Go, drop the mark", tc.key, goErr)
				}
				return
			}
			if got.Valid != goValid {
				t.Fatalf("reference.parse(%q).valid = %v (%q), registry.Parse error = %v", tc.key, got.Valid, got.Error, goErr)
			}

			_, ggcrErr := name.ParseReference(tc.key, name.WeakValidation)
			if tc.ggcrLaxer && ggcrErr != nil {
				t.Errorf("name.ParseReference(%q) failed (%v); the case is marked ggcr-laxer, drop the mark", tc.key, ggcrErr)
			}
			if !got.Valid {
				if !tc.ggcrLaxer && ggcrErr == nil {
					t.Errorf("name.ParseReference(%q) accepts what imagegate refuses; mark the case ggcrLaxer if that is deliberate", tc.key)
				}
				return
			}

			want := ref.Facts
			if got.Registry != want.Registry || got.Repository != want.Repository || got.Tag != want.Tag || got.Digest != want.Digest {
				t.Errorf("reference.parse(%q) = %s/%s tag %q digest %q, registry.Parse = %s/%s tag %q digest %q",
					tc.key, got.Registry, got.Repository, got.Tag, got.Digest, want.Registry, want.Repository, want.Tag, want.Digest)
			}
			if wantImplicit := want.Digest == "" && !explicitTag(tc.key); got.ImplicitTag != wantImplicit {
				t.Errorf("reference.parse(%q).implicitTag = %v, want %v", tc.key, got.ImplicitTag, wantImplicit)
			}
			checkGGCR(t, tc.key, got)
		})
	}
}

// checkGGCR compares a reference both parsers accept with
// go-containerregistry's reading, normalised as facts are: registry
// lower-cased, Docker Hub aliases as docker.io with "library/" for
// single-component names. ggcr's ParseReference returns a Digest for
// repo:tag@digest and drops the tag; imagegate keeps it (freshness).
func checkGGCR(t *testing.T, key string, got parsed) {
	t.Helper()
	r, err := name.ParseReference(key, name.WeakValidation)
	if err != nil {
		t.Errorf("name.ParseReference(%q) = %v, but imagegate accepts it", key, err)
		return
	}
	reg := strings.ToLower(r.Context().RegistryStr())
	repo := r.Context().RepositoryStr()
	switch reg {
	case name.DefaultRegistry, "docker.io", "registry-1.docker.io":
		reg = registry.DockerHub
		if !strings.Contains(repo, "/") {
			repo = "library/" + repo
		}
	}
	if got.Registry != reg || got.Repository != repo {
		t.Errorf("reference.parse(%q) = %s/%s, go-containerregistry = %s/%s", key, got.Registry, got.Repository, reg, repo)
	}
	switch r := r.(type) {
	case name.Tag:
		if got.Tag != r.TagStr() || got.Digest != "" {
			t.Errorf("reference.parse(%q) tag %q digest %q, go-containerregistry tag %q", key, got.Tag, got.Digest, r.TagStr())
		}
	case name.Digest:
		if got.Digest != r.DigestStr() {
			t.Errorf("reference.parse(%q) digest %q, go-containerregistry digest %q", key, got.Digest, r.DigestStr())
		}
	}
}

// explicitTag reports whether key writes a tag: a ':' after the last '/'
// before any '@'.
func explicitTag(key string) bool {
	base, _, _ := strings.Cut(key, "@")
	return strings.LastIndex(base, ":") > strings.LastIndex(base, "/")
}
