package rego_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/imagegate/imagegate/rego"
)

// TestRemoteBundle: policy.opaConfig points the SDK at a bundle server; the
// bundle's decision is served, and the embedded library and imagegate's data
// stay available beside it (the bundle owns only its roots).
func TestRemoteBundle(t *testing.T) {
	src := `package remote

import data.imagegate.lib.pinning

decision := {"allowed": count(violations) == 0, "reason": concat("; ", violations)}

violations contains msg if {
	some c in input.spec.containers
	some msg in pinning.violations(c.image, null, data.imagegate.params.pinning)
}
`
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: "r1", Roots: &[]string{"remote"}},
		Modules:  []bundle.ModuleFile{{URL: "/remote/policy.rego", Path: "/remote/policy.rego", Raw: []byte(src), Parsed: ast.MustParseModuleWithOpts(src, ast.ParserOptions{RegoVersion: ast.RegoV1})}},
		Data:     map[string]any{},
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(buf.Bytes())
	}))
	defer srv.Close()
	cfg := filepath.Join(t.TempDir(), "opa.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("services:\n  s:\n    url: %s\nbundles:\n  remote:\n    service: s\n    resource: bundle.tar.gz\n", srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, rego.Options{OPAConfig: cfg, Query: "data.remote.decision", Data: map[string]any{"params": map[string]any{"pinning": map[string]any{}}}})
	res, err := e.Decide(t.Context(), map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"image": "nginx:latest"}}}}, noFacts{t})
	if err != nil {
		t.Fatalf("Decide() error = %v", err)
	}
	d := res.(map[string]any)
	if d["allowed"] != false || !bytes.Contains([]byte(d["reason"].(string)), []byte(`pinning: image "nginx:latest"`)) {
		t.Errorf("decision = %v, want a pinning denial from the remote bundle", d)
	}
}
