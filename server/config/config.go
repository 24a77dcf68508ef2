// Package config loads and validates imagegate's YAML configuration. Unknown
// fields and invalid values are errors that name the field; every default is
// documented on its field and in examples/config/imagegate.yaml.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is the whole service configuration (v1 contract: fields may be added,
// none changes meaning).
type Config struct {
	// Listen is the address of the one TLS port. Default ":8443".
	Listen string `json:"listen"`
	TLS    TLS    `json:"tls"`
	// Registries says which registries facts may come from and how to reach them.
	Registries Registries `json:"registries"`
	Trust      Trust      `json:"trust"`
	// Budget is how long a request may take: whatever is still being fetched by
	// then is answered as transient. Keep it below Gatekeeper's Provider
	// spec.timeout. Default 2.5s.
	Budget Duration `json:"budget"`
	Policy Policy   `json:"policy"`
	Cache  Cache    `json:"cache"`
	Limits Limits   `json:"limits"`
	Digest Digest   `json:"digest"`
	Log    Log      `json:"log"`
	// Server tunes the HTTPS server's connection timeouts.
	Server Server `json:"server"`
}

// Server bounds how long a client may take to send a request, so slow or
// stalled clients (slowloris) cannot hold connections open.
type Server struct {
	// ReadHeaderTimeout is how long a client may take to send a request's
	// headers (from the end of the TLS handshake or the previous request).
	// HTTP/2 has no header timeout: a connection silent this long is pinged
	// and closed if the ping is not answered within as long again.
	// Default 5s; between 100ms and 1m.
	ReadHeaderTimeout Duration `json:"readHeaderTimeout"`
	// ReadTimeout is how long a client may take to send a whole request,
	// headers and body. Default 10s; at least readHeaderTimeout, at most 5m.
	ReadTimeout Duration `json:"readTimeout"`
}

// TLS is the serving certificate, reloaded when the files change.
type TLS struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// ClientCAFile, when set, requires a client certificate signed by this CA
	// (Gatekeeper's webhook CA, the apiserver's client CA) on /v1/* and
	// /metrics; a certificate that does not verify fails the handshake;
	// /healthz and /readyz stay open for kubelet probes.
	ClientCAFile string `json:"clientCAFile"`
	// MinVersion is "1.3" (default) or "1.2".
	MinVersion string `json:"minVersion"`
}

// Registries controls which registries are contacted and how.
type Registries struct {
	// Allow lists registries ("host" or "host:port", exactly as in image
	// references) facts may come from. Empty allows nothing; "*" allows any.
	Allow []string `json:"allow"`
	// Insecure lists registries reached over plain HTTP.
	Insecure []string `json:"insecure"`
	// Private lists registries allowed to resolve to loopback, private or
	// link-local addresses. Any other registry that does is refused.
	Private []string `json:"private"`
	// DockerConfig is a docker config.json (or a mounted
	// kubernetes.io/dockerconfigjson secret's .dockerconfigjson) with
	// auths.<host>.auth credentials.
	DockerConfig string `json:"dockerConfig"`
	// CAFile is a PEM bundle of extra CAs trusted for registries (added to the
	// system roots), for registries with a private CA.
	CAFile string `json:"caFile"`
	// Credentials are per-registry username/password files (for example a
	// mounted kubernetes.io/basic-auth secret), re-read at each use.
	Credentials []Credential `json:"credentials"`
}

// Credential is one registry's username and password files.
type Credential struct {
	Registry     string `json:"registry"`
	UsernameFile string `json:"usernameFile"`
	PasswordFile string `json:"passwordFile"`
}

// Trust names the keys and Sigstore trusted roots signatures are verified with.
type Trust struct {
	Keys         map[string]string `json:"keys"`         // name → PEM public key file (ECDSA, RSA, Ed25519)
	TrustedRoots map[string]string `json:"trustedRoots"` // name → Sigstore trusted_root.json file (offline keyless)
	// TUF lists trusted roots fetched from TUF repositories (the
	// trusted_root.json target, as Sigstore publishes it) at startup, where a
	// failed fetch fails startup, and again every RefreshInterval. Names
	// share one namespace with TrustedRoots.
	TUF []TUFRoot `json:"tuf"`
	// RefreshInterval is how often keys, trustedRoots files and TUF roots
	// are loaded again while serving (a Sigstore root rotation published
	// through TUF, a replaced trusted_root.json). The new set replaces the
	// old only when all of it loads; a failed refresh is logged, counted in
	// imagegate_trust_refreshes_total{result="error"} and shown in /readyz
	// (still ready), and the previous keys and roots keep verifying.
	// Default 24h; "0s" turns refreshing off; otherwise at least 1m.
	RefreshInterval *Duration `json:"refreshInterval"`
	// KeyOptions are per-key requirements, by name in Keys.
	KeyOptions map[string]KeyOptions `json:"keyOptions"`
	// Thresholds for keyless verification; each defaults to 1.
	Thresholds Thresholds `json:"thresholds"`
}

// TUFRoot is a trusted root fetched from a TUF repository.
type TUFRoot struct {
	// Name is how facts and trust.keyOptions refer to the root.
	Name string `json:"name"`
	// Mirror is the repository's http(s) base URL, e.g.
	// https://tuf-repo-cdn.sigstore.dev (Sigstore public good).
	Mirror string `json:"mirror"`
	// RootFile is the initial TUF root.json the repository is trusted with.
	// It may be empty only for Sigstore's public-good and staging mirrors,
	// whose roots are built in.
	RootFile string `json:"rootFile"`
	// CachePath is a directory for TUF metadata and targets. Default ""
	// keeps them in memory (read-only file systems); the mirror is
	// contacted at every start and refresh either way. With a directory,
	// refreshes keep TUF's rollback protection (metadata versions older
	// than those already trusted are refused); in memory, each refresh
	// starts from RootFile, as a restart does.
	CachePath string `json:"cachePath"`
}

// KeyOptions are the requirements for signatures by one key.
type KeyOptions struct {
	// RequireTlog demands a Rekor entry for the key's signatures, verified
	// with TrustedRoot's Rekor logs. Default false: a key-signed signature
	// needs no log entry (cosign --tlog-upload=false).
	RequireTlog bool `json:"requireTlog"`
	// TrustedRoot names the root (in trustedRoots or tuf) whose Rekor logs
	// are trusted for this key; required with requireTlog.
	TrustedRoot string `json:"trustedRoot"`
}

// Thresholds are how many of each proof a keyless signature needs. 0 drops
// a requirement (for private Sigstore deployments without CT, say).
type Thresholds struct {
	SignedCertificateTimestamps *int `json:"signedCertificateTimestamps"`
	TransparencyLog             *int `json:"transparencyLog"`
	ObserverTimestamps          *int `json:"observerTimestamps"`
}

// Policy configures the embedded policy engine.
type Policy struct {
	// Dir replaces the embedded entrypoint with a directory of Rego and data
	// files, reloaded on change (a broken edit keeps the last good policy).
	Dir string `json:"dir"`
	// OPAConfig is an OPA configuration file: remote bundles, decision logs.
	OPAConfig string `json:"opaConfig"`
	// Query is the decision evaluated for ImageReviews.
	Query string `json:"query"`
	// RegoVersion of the modules in Dir: "v1" (default) or "v0" for
	// policies written before OPA 1.0 (the OPA image_enforcer's).
	RegoVersion string `json:"regoVersion"`
	// Params are visible to policy as data.imagegate.params; the bundled
	// policy reads rules, namespaces, exempt, audit and breakGlass.
	Params map[string]any `json:"params"`
}

// Cache bounds and times the facts cache.
type Cache struct {
	TagTTL      Duration `json:"tagTTL"`      // tag → digest; default 30s
	FactsTTL    Duration `json:"factsTTL"`    // digest → facts; default 1h
	NegativeTTL Duration `json:"negativeTTL"` // not found, unauthorized, …; default 15s
	UnsignedTTL Duration `json:"unsignedTTL"` // facts with no verified signature; default 1m
	MaxEntries  int      `json:"maxEntries"`  // per cache; default 10000
}

// Limits bound requests and what is read from registries.
type Limits struct {
	MaxBodyBytes   int64    `json:"maxBodyBytes"`   // request body; default 1 MiB
	MaxKeys        int      `json:"maxKeys"`        // keys per external-data request; default 1000
	ManifestBytes  int64    `json:"manifestBytes"`  // default 4 MiB
	ConfigBytes    int64    `json:"configBytes"`    // default 4 MiB
	Children       int      `json:"children"`       // platform manifests per index; default 64
	FetchTimeout   Duration `json:"fetchTimeout"`   // a cold fetch's own deadline; default 30s
	MaxInFlight    int      `json:"maxInFlight"`    // cold fetches at once; default 64
	MaxReferrers   int      `json:"maxReferrers"`   // referrers opened per digest; default 32
	BundleBytes    int64    `json:"bundleBytes"`    // one bundle, payload or envelope; default 1 MiB
	PredicateBytes int64    `json:"predicateBytes"` // attestation predicate carried into facts; default 64 KiB
	// MaxConcurrentRequests bounds the /v1/* requests being handled at once;
	// as many more wait for a slot, each at most half the budget, and the
	// rest are shed with 503 "overloaded: …". /healthz, /readyz and /metrics
	// are not limited. Default 128.
	MaxConcurrentRequests int `json:"maxConcurrentRequests"`
}

// Digest configures the imagegate-digest provider used by mutation.
type Digest struct {
	// KeepTag answers repo:tag@sha256:… instead of repo@sha256:….
	KeepTag bool `json:"keepTag"`
}

// Log configures the JSON logs.
type Log struct {
	Level string `json:"level"` // debug, info (default), warn, error
}

// Duration is a time.Duration written as "2.5s" in YAML.
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"2.5s\", got %s", string(b))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"2.5s\": %w", err)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Load reads, defaults and validates a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML strictly (unknown and duplicate fields are errors),
// applies defaults and validates.
func Parse(b []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, cleanYAMLError(err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Default returns the configuration used when no file is given: nothing
// allowed, every default set.
func Default() *Config {
	var c Config
	c.SetDefaults()
	return &c
}

// SetDefaults fills every zero field with its default.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = ":8443"
	}
	if c.TLS.MinVersion == "" {
		c.TLS.MinVersion = "1.3"
	}
	if c.Budget == 0 {
		c.Budget = Duration(2500 * time.Millisecond)
	}
	if c.Policy.Query == "" {
		c.Policy.Query = "data.imagegate.review.decision"
	}
	if c.Policy.RegoVersion == "" {
		c.Policy.RegoVersion = "v1"
	}
	dur := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	dur(&c.Cache.TagTTL, 30*time.Second)
	dur(&c.Cache.FactsTTL, time.Hour)
	dur(&c.Cache.NegativeTTL, 15*time.Second)
	dur(&c.Cache.UnsignedTTL, time.Minute)
	if c.Cache.MaxEntries == 0 {
		c.Cache.MaxEntries = 10000
	}
	if c.Limits.MaxBodyBytes == 0 {
		c.Limits.MaxBodyBytes = 1 << 20
	}
	if c.Limits.MaxKeys == 0 {
		c.Limits.MaxKeys = 1000
	}
	if c.Limits.ManifestBytes == 0 {
		c.Limits.ManifestBytes = 4 << 20
	}
	if c.Limits.ConfigBytes == 0 {
		c.Limits.ConfigBytes = 4 << 20
	}
	if c.Limits.Children == 0 {
		c.Limits.Children = 64
	}
	dur(&c.Limits.FetchTimeout, 30*time.Second)
	if c.Limits.MaxInFlight == 0 {
		c.Limits.MaxInFlight = 64
	}
	if c.Limits.MaxReferrers == 0 {
		c.Limits.MaxReferrers = 32
	}
	if c.Limits.BundleBytes == 0 {
		c.Limits.BundleBytes = 1 << 20
	}
	if c.Limits.PredicateBytes == 0 {
		c.Limits.PredicateBytes = 64 << 10
	}
	if c.Limits.MaxConcurrentRequests == 0 {
		c.Limits.MaxConcurrentRequests = 128
	}
	dur(&c.Server.ReadHeaderTimeout, 5*time.Second)
	dur(&c.Server.ReadTimeout, 10*time.Second)
	one := func(p **int) {
		if *p == nil {
			v := 1
			*p = &v
		}
	}
	if c.Trust.RefreshInterval == nil {
		d := Duration(24 * time.Hour)
		c.Trust.RefreshInterval = &d
	}
	one(&c.Trust.Thresholds.SignedCertificateTimestamps)
	one(&c.Trust.Thresholds.TransparencyLog)
	one(&c.Trust.Thresholds.ObserverTimestamps)
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
}

// Validate checks values; each error names the field. Registry host syntax is
// checked by the guard when the service is built.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.TLS.MinVersion != "1.3" && c.TLS.MinVersion != "1.2" {
		bad("tls.minVersion", "want \"1.3\" or \"1.2\", got %q", c.TLS.MinVersion)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "certFile and keyFile must be set together")
	}
	if c.Budget < 0 || c.Budget.D() > 30*time.Second {
		bad("budget", "want a duration between 0 and 30s, got %s", c.Budget.D())
	}
	if c.Limits.FetchTimeout < c.Budget {
		bad("limits.fetchTimeout", "must be at least budget (%s), got %s", c.Budget.D(), c.Limits.FetchTimeout.D())
	}
	for _, f := range []struct {
		name string
		d    Duration
	}{{"cache.tagTTL", c.Cache.TagTTL}, {"cache.factsTTL", c.Cache.FactsTTL}, {"cache.negativeTTL", c.Cache.NegativeTTL}, {"cache.unsignedTTL", c.Cache.UnsignedTTL}} {
		if f.d < 0 {
			bad(f.name, "must not be negative, got %s", f.d.D())
		}
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"cache.maxEntries", int64(c.Cache.MaxEntries)},
		{"limits.maxBodyBytes", c.Limits.MaxBodyBytes},
		{"limits.maxKeys", int64(c.Limits.MaxKeys)},
		{"limits.manifestBytes", c.Limits.ManifestBytes},
		{"limits.configBytes", c.Limits.ConfigBytes},
		{"limits.children", int64(c.Limits.Children)},
		{"limits.maxInFlight", int64(c.Limits.MaxInFlight)},
		{"limits.maxReferrers", int64(c.Limits.MaxReferrers)},
		{"limits.bundleBytes", c.Limits.BundleBytes},
		{"limits.predicateBytes", c.Limits.PredicateBytes},
		{"limits.maxConcurrentRequests", int64(c.Limits.MaxConcurrentRequests)},
	}
	for _, p := range positive {
		if p.v < 0 {
			bad(p.name, "must be positive, got %d", p.v)
		}
	}
	if rh := c.Server.ReadHeaderTimeout.D(); rh < 100*time.Millisecond || rh > time.Minute {
		bad("server.readHeaderTimeout", "want a duration between 100ms and 1m, got %s", rh)
	}
	if rt := c.Server.ReadTimeout.D(); rt < c.Server.ReadHeaderTimeout.D() || rt > 5*time.Minute {
		bad("server.readTimeout", "want a duration between server.readHeaderTimeout (%s) and 5m, got %s", c.Server.ReadHeaderTimeout.D(), rt)
	}
	if c.Policy.RegoVersion != "v1" && c.Policy.RegoVersion != "v0" {
		bad("policy.regoVersion", "want \"v1\" or \"v0\", got %q", c.Policy.RegoVersion)
	}
	if c.Policy.Dir != "" {
		if fi, err := os.Stat(c.Policy.Dir); err != nil || !fi.IsDir() {
			bad("policy.dir", "%q is not a readable directory", c.Policy.Dir)
		}
	}
	if c.Policy.OPAConfig != "" {
		if err := readable(c.Policy.OPAConfig); err != nil {
			bad("policy.opaConfig", "%v", err)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	for i, cr := range c.Registries.Credentials {
		if cr.Registry == "" || cr.UsernameFile == "" || cr.PasswordFile == "" {
			bad(fmt.Sprintf("registries.credentials[%d]", i), "registry, usernameFile and passwordFile are required")
		}
	}
	th := c.Trust.Thresholds
	for _, f := range []struct {
		name string
		v    *int
	}{{"signedCertificateTimestamps", th.SignedCertificateTimestamps}, {"transparencyLog", th.TransparencyLog}, {"observerTimestamps", th.ObserverTimestamps}} {
		if f.v != nil && *f.v < 0 {
			bad("trust.thresholds."+f.name, "must not be negative, got %d", *f.v)
		}
	}
	if th.ObserverTimestamps != nil && th.TransparencyLog != nil && *th.ObserverTimestamps == 0 && *th.TransparencyLog == 0 {
		bad("trust.thresholds", "observerTimestamps and transparencyLog cannot both be 0: a keyless certificate needs a verified time")
	}
	if ri := c.Trust.RefreshInterval; ri != nil && *ri != 0 && ri.D() < time.Minute {
		bad("trust.refreshInterval", "want 0s (off) or at least 1m, got %s", ri.D())
	}
	for name, path := range c.Trust.Keys {
		if err := readable(path); err != nil {
			bad("trust.keys."+name, "%v", err)
		}
	}
	for name, path := range c.Trust.TrustedRoots {
		if err := readable(path); err != nil {
			bad("trust.trustedRoots."+name, "%v", err)
		}
	}
	roots := map[string]string{} // root name → its field
	for name := range c.Trust.TrustedRoots {
		roots[name] = "trust.trustedRoots." + name
	}
	for i, r := range c.Trust.TUF {
		field := fmt.Sprintf("trust.tuf[%d]", i)
		switch other, dup := roots[r.Name]; {
		case r.Name == "":
			bad(field+".name", "required")
		case dup:
			bad(field+".name", "%q is already the name of %s", r.Name, other)
		default:
			roots[r.Name] = field
		}
		if u, err := url.Parse(r.Mirror); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(field+".mirror", "want an http(s) URL such as https://tuf-repo-cdn.sigstore.dev, got %q", r.Mirror)
		}
		if r.RootFile != "" {
			if err := readable(r.RootFile); err != nil {
				bad(field+".rootFile", "%v", err)
			}
		}
	}
	for name, ko := range c.Trust.KeyOptions {
		field := "trust.keyOptions." + name
		if _, ok := c.Trust.Keys[name]; !ok {
			bad(field, "no key %q in trust.keys", name)
		}
		switch _, known := roots[ko.TrustedRoot]; {
		case ko.RequireTlog && ko.TrustedRoot == "":
			bad(field+".trustedRoot", "required with requireTlog (the root whose Rekor logs are trusted)")
		case !ko.RequireTlog && ko.TrustedRoot != "":
			bad(field+".trustedRoot", "only used with requireTlog: true")
		case ko.TrustedRoot != "" && !known:
			bad(field+".trustedRoot", "no trusted root %q in trust.trustedRoots or trust.tuf", ko.TrustedRoot)
		}
	}
	return errors.Join(errs...)
}

// ValidateServe checks what only the server needs.
func (c *Config) ValidateServe() error {
	if c.TLS.CertFile == "" {
		return errors.New("tls.certFile and tls.keyFile are required to serve (imagegate serves HTTPS only)")
	}
	return nil
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// cleanYAMLError turns sigs.k8s.io/yaml's messages into ones that name the
// field: `error unmarshaling JSON: while decoding JSON: json: unknown field "x"`.
func cleanYAMLError(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "json: "); i >= 0 {
		msg = msg[i+len("json: "):]
	}
	return errors.New(msg)
}
