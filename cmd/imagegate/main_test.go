package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"

	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/server"
	"github.com/imagegate/imagegate/server/config"
)

// TestFactsMatchesProvider checks that `imagegate facts` prints, element for
// element, the value (or error) the imagegate-facts provider answers.
func TestFactsMatchesProvider(t *testing.T) {
	reg := registrytest.New(t)
	reg.PushImage(t, "team/app", "v1", registrytest.Image{Created: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Labels: map[string]string{"a": "b"}})
	reg.PushIndex(t, "team/multi", "v1", registrytest.Image{Arch: "amd64"}, registrytest.Image{Arch: "arm64"})
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	cfgYAML := fmt.Sprintf("registries:\n  allow: [%q]\n  insecure: [%q]\n  private: [%q]\n", reg.Host, reg.Host, reg.Host)
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := []string{reg.Host + "/team/app:v1", reg.Host + "/team/multi:v1", reg.Host + "/team/app:missing", "docker.io/library/nginx:1"}

	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), append([]string{"facts", "--config", cfgPath}, keys...), &stdout, &stderr); err != nil {
		t.Fatalf("imagegate facts: %v\n%s", err, stderr.String())
	}
	var printed []json.RawMessage
	if err := json.Unmarshal(stdout.Bytes(), &printed); err != nil {
		t.Fatalf("output is not a JSON array: %v\n%s", err, stdout.String())
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := server.NewLookup(cfg, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(server.Deps{Lookup: lk}))
	defer srv.Close()
	body, _ := json.Marshal(externaldata.NewProviderRequest(keys))
	resp, err := http.Post(srv.URL+"/v1/externaldata/facts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr struct {
		Response struct {
			Items []struct {
				Key   string          `json:"key"`
				Value json.RawMessage `json:"value"`
				Error string          `json:"error"`
			} `json:"items"`
		} `json:"response"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		t.Fatal(err)
	}
	if len(printed) != len(keys) || len(pr.Response.Items) != len(keys) {
		t.Fatalf("printed %d elements, provider %d items, want %d each", len(printed), len(pr.Response.Items), len(keys))
	}
	for i, it := range pr.Response.Items {
		if it.Error != "" {
			var e keyError
			if err := json.Unmarshal(printed[i], &e); err != nil || e.Image != keys[i] || e.Error != it.Error {
				t.Errorf("element %d = %s, want {image: %q, error: %q}", i, printed[i], keys[i], it.Error)
			}
			continue
		}
		if !jsonEqual(t, printed[i], it.Value) {
			t.Errorf("element %d = %s\nprovider value = %s", i, printed[i], it.Value)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		desc string
		args []string
		want string
	}{
		{desc: "no subcommand", args: nil, want: "a subcommand is required"},
		{desc: "unknown subcommand", args: []string{"nope"}, want: `unknown subcommand "nope"`},
		{desc: "facts without images", args: []string{"facts"}, want: "at least one IMAGE"},
		{desc: "serve without config", args: []string{"serve"}, want: "--config is required"},
		{desc: "missing config file", args: []string{"facts", "--config", "/nonexistent/x.yaml", "nginx"}, want: "no such file"},
		{desc: "certs without dir", args: []string{"certs"}, want: "--dir is required"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(t.Context(), tc.args, &out, &errb)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%q) = %v, want a usage error mentioning %q", tc.args, err, tc.want)
			}
			if exitCode(err) != 2 {
				t.Errorf("exitCode = %d, want 2", exitCode(err))
			}
		})
	}
}

func TestServeConfigWithoutTLS(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("listen: 127.0.0.1:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(t.Context(), []string{"serve", "--config", p}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "tls.certFile") {
		t.Errorf("serve without TLS = %v, want an error naming tls.certFile", err)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"version"}, &out, &bytes.Buffer{}); err != nil || !strings.HasPrefix(out.String(), "imagegate ") {
		t.Errorf("version = %q, %v", out.String(), err)
	}
}
