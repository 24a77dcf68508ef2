// Package providers_test enforces the dependency direction
// cmd → server → {rego, providers}: providers never import an HTTP server
// framework, OPA, Prometheus, or imagegate's server, rego or cmd packages.
package providers_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

var forbidden = []string{
	"github.com/go-chi/chi",
	"github.com/open-policy-agent/",
	"github.com/prometheus/",
	"github.com/imagegate/imagegate/server",
	"github.com/imagegate/imagegate/rego",
	"github.com/imagegate/imagegate/cmd",
}

func TestProvidersDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath,Deps", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	n := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.ImportPath, "github.com/imagegate/imagegate/providers") {
			continue
		}
		n++
		for _, d := range p.Deps {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s depends on %s; providers must not import %s*", p.ImportPath, d, f)
				}
			}
		}
	}
	if n < 4 {
		t.Fatalf("checked %d provider packages, want at least 4 (facts, guard, registry, lookup)", n)
	}
}
