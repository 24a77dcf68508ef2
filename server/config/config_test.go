package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		desc, yaml, want string
	}{
		{desc: "unknown top-level field", yaml: "listn: :8443\n", want: `unknown field "listn"`},
		{desc: "unknown nested field", yaml: "registries:\n  alow: [ghcr.io]\n", want: `unknown field "alow"`},
		{desc: "bad duration", yaml: "budget: fast\n", want: "duration"},
		{desc: "budget too long", yaml: "budget: 45s\n", want: "budget:"},
		{desc: "fetch timeout below budget", yaml: "budget: 5s\nlimits:\n  fetchTimeout: 1s\n", want: "limits.fetchTimeout"},
		{desc: "tls version", yaml: "tls:\n  minVersion: \"1.0\"\n", want: "tls.minVersion"},
		{desc: "cert without key", yaml: "tls:\n  certFile: a.crt\n", want: "certFile and keyFile"},
		{desc: "negative ttl", yaml: "cache:\n  tagTTL: -1s\n", want: "cache.tagTTL"},
		{desc: "negative limit", yaml: "limits:\n  maxKeys: -3\n", want: "limits.maxKeys"},
		{desc: "log level", yaml: "log:\n  level: loud\n", want: "log.level"},
		{desc: "credential incomplete", yaml: "registries:\n  credentials:\n  - registry: ghcr.io\n", want: "registries.credentials[0]"},
		{desc: "missing trust key file", yaml: "trust:\n  keys:\n    release: /nonexistent/release.pub\n", want: "trust.keys.release"},
		{desc: "tuf mirror not a URL", yaml: "trust:\n  tuf:\n  - name: corp\n    mirror: tuf.corp.example\n", want: "trust.tuf[0].mirror"},
		{desc: "tuf name taken", yaml: "trust:\n  tuf:\n  - {name: corp, mirror: \"https://tuf.corp.example\"}\n  - {name: corp, mirror: \"https://tuf2.corp.example\"}\n", want: "trust.tuf[1].name"},
		{desc: "trust refresh too often", yaml: "trust:\n  refreshInterval: 10s\n", want: "trust.refreshInterval: want 0s (off) or at least 1m, got 10s"},
		{desc: "negative trust refresh", yaml: "trust:\n  refreshInterval: -1h\n", want: "trust.refreshInterval"},
		{desc: "trust refresh not a duration", yaml: "trust:\n  refreshInterval: daily\n", want: `invalid duration "daily"`},
		{desc: "key options for an unknown root", yaml: "trust:\n  keyOptions:\n    release: {requireTlog: true, trustedRoot: public-good}\n", want: `trust.keyOptions.release.trustedRoot: no trusted root "public-good"`},
		{desc: "wrong type", yaml: "limits:\n  maxKeys: many\n", want: "maxKeys"},
		{desc: "duplicate field", yaml: "listen: a\nlisten: b\n", want: "listen"},
		{desc: "negative concurrency limit", yaml: "limits:\n  maxConcurrentRequests: -1\n", want: "limits.maxConcurrentRequests"},
		{desc: "header timeout too short", yaml: "server:\n  readHeaderTimeout: 1ms\n", want: "server.readHeaderTimeout"},
		{desc: "read timeout below header timeout", yaml: "server:\n  readHeaderTimeout: 20s\n  readTimeout: 10s\n", want: "server.readTimeout"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) error = %v, want it to mention %q", tc.yaml, err, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8443" || c.Budget.D() != 2500*time.Millisecond || c.TLS.MinVersion != "1.3" ||
		c.Cache.TagTTL.D() != 30*time.Second || c.Limits.MaxKeys != 1000 || len(c.Registries.Allow) != 0 ||
		c.Policy.Query != "data.imagegate.review.decision" {
		t.Errorf("defaults = %+v", c)
	}
	if c.Limits.MaxConcurrentRequests != 128 || c.Server.ReadHeaderTimeout.D() != 5*time.Second || c.Server.ReadTimeout.D() != 10*time.Second {
		t.Errorf("limits.maxConcurrentRequests, server.readHeaderTimeout, server.readTimeout = %d, %s, %s; want 128, 5s, 10s",
			c.Limits.MaxConcurrentRequests, c.Server.ReadHeaderTimeout.D(), c.Server.ReadTimeout.D())
	}
	if err := c.ValidateServe(); err == nil {
		t.Error("ValidateServe() with no TLS = nil, want an error")
	}
}

// TestExamplesParse keeps examples/config in step with the code.
func TestExamplesParse(t *testing.T) {
	files, err := filepath.Glob("../../examples/config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(b); err != nil {
				t.Errorf("Parse(%s) = %v", f, err)
			}
		})
	}
}

func TestTrustTUFAndKeyOptions(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"release.pub", "root.json"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Parse([]byte(`
trust:
  keys: {release: ` + filepath.Join(dir, "release.pub") + `}
  tuf:
  - name: public-good
    mirror: https://tuf-repo-cdn.sigstore.dev
  - name: corp
    mirror: https://tuf.corp.example/
    rootFile: ` + filepath.Join(dir, "root.json") + `
    cachePath: /var/cache/imagegate/tuf
  keyOptions:
    release: {requireTlog: true, trustedRoot: corp}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Trust.TUF) != 2 || c.Trust.TUF[1] != (TUFRoot{Name: "corp", Mirror: "https://tuf.corp.example/", RootFile: filepath.Join(dir, "root.json"), CachePath: "/var/cache/imagegate/tuf"}) ||
		c.Trust.KeyOptions["release"] != (KeyOptions{RequireTlog: true, TrustedRoot: "corp"}) {
		t.Errorf("trust = %+v", c.Trust)
	}
}

// TestTrustRefreshInterval: unset is 24h, "0s" stays 0 (refresh off) rather
// than taking the default.
func TestTrustRefreshInterval(t *testing.T) {
	for _, tc := range []struct {
		desc, yaml string
		want       time.Duration
	}{
		{desc: "unset", yaml: "{}", want: 24 * time.Hour},
		{desc: "off", yaml: "trust:\n  refreshInterval: 0s\n", want: 0},
		{desc: "hourly", yaml: "trust:\n  refreshInterval: 1h\n", want: time.Hour},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Trust.RefreshInterval.D(); got != tc.want {
				t.Errorf("trust.refreshInterval = %s, want %s", got, tc.want)
			}
		})
	}
	if d := Default().Trust.RefreshInterval; d == nil || d.D() != 24*time.Hour {
		t.Errorf("Default().Trust.RefreshInterval = %v, want 24h", d)
	}
}
