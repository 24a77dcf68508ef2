package server_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/registry/registrytest"
	"github.com/imagegate/imagegate/server/certs"
	"github.com/imagegate/imagegate/server/config"
	"github.com/imagegate/imagegate/server/servertest"
)

// harness is a real imagegate HTTPS server (server.Run, as `imagegate serve`
// runs it) in front of a real in-process registry.
type harness struct {
	reg    *registrytest.Registry
	base   string
	bundle *certs.Bundle
	client *http.Client
	logs   *lockedWriter
}

// start runs the server with a config allowing reg; edit adjusts the config.
func start(t *testing.T, reg *registrytest.Registry, edit func(*config.Config)) *harness {
	t.Helper()
	b, err := certs.Generate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS.CertFile, cfg.TLS.KeyFile = b.CertFile, b.KeyFile
	if reg != nil {
		cfg.Registries.Allow = []string{reg.Host}
		cfg.Registries.Insecure = []string{reg.Host}
		cfg.Registries.Private = []string{reg.Host}
	}
	if edit != nil {
		edit(cfg)
	}
	logs := &lockedWriter{w: &bytes.Buffer{}}
	addr := servertest.Start(t, cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	h := &harness{reg: reg, base: "https://" + addr, bundle: b, logs: logs}
	h.client = h.newClient(t, "")
	return h
}

// newClient trusts the dev CA; with clientCert "client" it presents the
// bundle's client certificate.
func (h *harness) newClient(t *testing.T, clientCert string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.bundle.CAPEM)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if clientCert == "client" {
		c, err := tls.LoadX509KeyPair(h.bundle.ClientCertFile, h.bundle.ClientKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// providerRequest builds the body Gatekeeper sends.
func providerRequest(keys ...string) []byte {
	b, _ := json.Marshal(externaldata.NewProviderRequest(keys))
	return b
}

// response is a ProviderResponse with facts values decoded.
type response struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   struct {
		Idempotent bool `json:"idempotent"`
		Items      []struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
			Error string          `json:"error"`
		} `json:"items"`
		SystemError string `json:"systemError"`
	} `json:"response"`
}

func (h *harness) post(t *testing.T, path string, body []byte) (int, response) {
	t.Helper()
	resp, err := h.client.Post(h.base+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var r response
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("POST %s: response is not JSON: %v\n%s", path, err, raw)
	}
	return resp.StatusCode, r
}

// factsOf decodes item i's value.
func factsOf(t *testing.T, r response, i int) facts.Facts {
	t.Helper()
	if i >= len(r.Response.Items) {
		t.Fatalf("response has %d items, want item %d: %+v", len(r.Response.Items), i, r)
	}
	it := r.Response.Items[i]
	if it.Error != "" {
		t.Fatalf("item %d (%s) error = %q, want facts", i, it.Key, it.Error)
	}
	var f facts.Facts
	if err := json.Unmarshal(it.Value, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func (h *harness) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := h.client.Get(h.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
