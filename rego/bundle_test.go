package rego_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/imagegate/imagegate/rego"
)

// bundleServer serves one bundle (package remote, revision r1) at
// /bundle.tar.gz and collects decision-log uploads at /logs.
type bundleServer struct {
	URL    string
	mu     sync.Mutex
	events []map[string]any
}

func serveBundle(t *testing.T, src string) *bundleServer {
	t.Helper()
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: "r1", Roots: &[]string{"remote"}},
		Modules:  []bundle.ModuleFile{{URL: "/remote/policy.rego", Path: "/remote/policy.rego", Raw: []byte(src), Parsed: ast.MustParseModuleWithOpts(src, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})}},
		Data:     map[string]any{},
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	bs := &bundleServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/logs") {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("decision log upload: %v", err)
				return
			}
			body, _ := io.ReadAll(zr)
			var evs []map[string]any
			if err := json.Unmarshal(body, &evs); err != nil {
				t.Errorf("decision log upload: %v\n%s", err, body)
			}
			bs.mu.Lock()
			bs.events = append(bs.events, evs...)
			bs.mu.Unlock()
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(buf.Bytes())
	}))
	t.Cleanup(srv.Close)
	bs.URL = srv.URL
	return bs
}

func (bs *bundleServer) Events() []map[string]any {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return append([]map[string]any(nil), bs.events...)
}

// opaConfig writes an OPA configuration that loads the bundle, plus extra.
func (bs *bundleServer) opaConfig(t *testing.T, extra string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "opa.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("services:\n  s:\n    url: %s\nbundles:\n  remote:\n    service: s\n    resource: bundle.tar.gz\n%s", bs.URL, extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

const remotePinning = `package remote

import data.imagegate.lib.pinning

decision := {"allowed": count(violations) == 0, "reason": concat("; ", violations)}

violations contains msg if {
	some c in input.spec.containers
	some msg in pinning.violations(c.image, null, data.imagegate.params.pinning)
}
`

func containers(images ...string) map[string]any {
	var cs []any
	for _, i := range images {
		cs = append(cs, map[string]any{"image": i})
	}
	return map[string]any{"spec": map[string]any{"containers": cs}}
}

// TestRemoteBundle: policy.opaConfig points the SDK at a bundle server; the
// bundle's decision is served, and the embedded library and imagegate's data
// stay available beside it (the bundle owns only its roots).
func TestRemoteBundle(t *testing.T) {
	bs := serveBundle(t, remotePinning)
	e := newEngine(t, rego.Options{OPAConfig: bs.opaConfig(t, ""), Query: "data.remote.decision", Data: map[string]any{"params": map[string]any{"pinning": map[string]any{}}}})
	res, err := e.Decide(t.Context(), containers("nginx:latest"), noFacts{t})
	if err != nil {
		t.Fatalf("Decide() error = %v", err)
	}
	d := res.(map[string]any)
	if d["allowed"] != false || !bytes.Contains([]byte(d["reason"].(string)), []byte(`pinning: image "nginx:latest"`)) {
		t.Errorf("decision = %v, want a pinning denial from the remote bundle", d)
	}
}

// TestRemoteBundleConcurrentLabelled: decisions from many goroutines at once
// with a remote bundle whose rules carry METADATA labels. Through
// sdk.Decision this was a data race (the evaluated-rule tracker of the first
// call, kept in the SDK's cached prepared query, written by every later
// call: concurrent map writes); under -race this test fails on it.
func TestRemoteBundleConcurrentLabelled(t *testing.T) {
	bs := serveBundle(t, `package remote

# METADATA
# custom:
#   labels:
#     team: platform
decision := {"allowed": true, "reason": "ghcr"} if {
	some c in input.spec.containers
	startswith(c.image, "ghcr.io/")
}

# METADATA
# custom:
#   labels:
#     team: security
decision := {"allowed": false, "reason": "elsewhere"} if {
	some c in input.spec.containers
	not startswith(c.image, "ghcr.io/")
}
`)
	e := newEngine(t, rego.Options{OPAConfig: bs.opaConfig(t, ""), Query: "data.remote.decision"})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			image, want := "ghcr.io/acme/app:1", "ghcr"
			if i%2 == 1 {
				image, want = "docker.io/acme/app:1", "elsewhere"
			}
			for range 100 {
				res, err := e.Decide(t.Context(), containers(image), nil)
				if err != nil {
					errs <- err
					return
				}
				if r := res.(map[string]any)["reason"]; r != want {
					errs <- fmt.Errorf("%s: reason %v, want %s", image, r, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestRemoteBundleDecisionLogs: with decision_logs configured, each decision
// reaches the log service with its id, path, input, result and the bundle's
// revision; an undefined decision is logged with its error.
func TestRemoteBundleDecisionLogs(t *testing.T) {
	bs := serveBundle(t, remotePinning)
	cfg := bs.opaConfig(t, "decision_logs:\n  service: s\n  resource: logs\n  reporting:\n    min_delay_seconds: 1\n    max_delay_seconds: 1\n")
	e := newEngine(t, rego.Options{OPAConfig: cfg, Query: "data.remote.decision", Data: map[string]any{"params": map[string]any{"pinning": map[string]any{}}}})
	if _, err := e.Decide(t.Context(), containers("nginx:latest"), nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	var evs []map[string]any
	for len(evs) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		evs = bs.Events()
	}
	if len(evs) != 1 {
		t.Fatalf("decision log events = %d (%v), want 1", len(evs), evs)
	}
	ev := evs[0]
	res, _ := ev["result"].(map[string]any)
	input, _ := ev["input"].(map[string]any)
	bundles, _ := ev["bundles"].(map[string]any)
	if id, _ := ev["decision_id"].(string); len(id) != 36 || ev["path"] != "remote/decision" || res["allowed"] != false || input["spec"] == nil ||
		fmt.Sprint(bundles["remote"]) != "map[revision:r1]" {
		t.Errorf("decision log event = %v, want a decision id, path remote/decision, the input, allowed false and bundle revision r1", ev)
	}
}
