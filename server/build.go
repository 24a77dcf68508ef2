package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/imagegate/imagegate/providers/guard"
	"github.com/imagegate/imagegate/providers/lookup"
	"github.com/imagegate/imagegate/providers/registry"
	"github.com/imagegate/imagegate/providers/signature"
	"github.com/imagegate/imagegate/rego"
	"github.com/imagegate/imagegate/server/config"
)

// Version is set at build time with -ldflags "-X …/server.Version=v1.2.3".
var Version = "dev"

// NewLookup builds the long-lived facts service from a config: the SSRF guard,
// the registry client with its keychain, and the caches. The server and
// `imagegate facts` both use it, so they answer alike. m may be nil.
func NewLookup(cfg *config.Config, m *Metrics, generation uint64) (*lookup.Service, error) {
	lk, _, err := newLookup(cfg, m, generation)
	return lk, err
}

// newLookup is NewLookup that also returns the signature verifier, which
// the server refreshes every trust.refreshInterval.
func newLookup(cfg *config.Config, m *Metrics, generation uint64) (*lookup.Service, *signature.Verifier, error) {
	var tlsConf *tls.Config
	if cfg.Registries.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(cfg.Registries.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("registries.caFile: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("registries.caFile %s: no PEM certificates found", cfg.Registries.CAFile)
		}
		tlsConf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	g, err := guard.New(guard.Options{
		Allow:           cfg.Registries.Allow,
		Insecure:        cfg.Registries.Insecure,
		Private:         cfg.Registries.Private,
		TLSClientConfig: tlsConf,
	})
	if err != nil {
		return nil, nil, err
	}
	creds := make([]registry.Credential, len(cfg.Registries.Credentials))
	for i, c := range cfg.Registries.Credentials {
		creds[i] = registry.Credential(c)
	}
	kc, err := registry.NewKeychain(cfg.Registries.DockerConfig, creds)
	if err != nil {
		return nil, nil, err
	}
	ro := registry.Options{
		Guard:    g,
		Keychain: kc,
		Limits: registry.Limits{
			ManifestBytes: cfg.Limits.ManifestBytes,
			ConfigBytes:   cfg.Limits.ConfigBytes,
			Children:      cfg.Limits.Children,
		},
		UserAgent: "imagegate/" + Version,
		// Per-repository connection and auth state (~0.5 KB per repository)
		// is kept for the repositories in use, not for every cached digest:
		// past the bound it starts afresh, and the next cold lookup in an
		// older repository authenticates again (one token round trip for
		// bearer registries; warm lookups never touch it).
		MaxRepositories: min(cfg.Cache.MaxEntries, registry.DefaultMaxRepositories),
	}
	sv, err := signature.New(signature.Options{
		Keys:         cfg.Trust.Keys,
		TrustedRoots: cfg.Trust.TrustedRoots,
		// Field for field the same types (a conversion checks they stay so).
		TUF: func() (out []signature.TUFRoot) {
			for _, r := range cfg.Trust.TUF {
				out = append(out, signature.TUFRoot(r))
			}
			return out
		}(),
		KeyOptions: func() map[string]signature.KeyOptions {
			out := make(map[string]signature.KeyOptions, len(cfg.Trust.KeyOptions))
			for name, ko := range cfg.Trust.KeyOptions {
				out[name] = signature.KeyOptions(ko)
			}
			return out
		}(),
		Thresholds: signature.Thresholds{
			SignedCertificateTimestamps: *cfg.Trust.Thresholds.SignedCertificateTimestamps,
			TransparencyLog:             *cfg.Trust.Thresholds.TransparencyLog,
			ObserverTimestamps:          *cfg.Trust.Thresholds.ObserverTimestamps,
		},
		MaxReferrers:      cfg.Limits.MaxReferrers,
		MaxBundleBytes:    cfg.Limits.BundleBytes,
		MaxPredicateBytes: cfg.Limits.PredicateBytes,
	}, observerOrNil(m))
	if err != nil {
		return nil, nil, err
	}
	if m != nil {
		m.trustLoaded.SetToCurrentTime()
	}
	lo := lookup.Options{
		Signatures:   sv,
		UnsignedTTL:  cfg.Cache.UnsignedTTL.D(),
		Insecure:     g.Insecure,
		Generation:   generation,
		TagTTL:       cfg.Cache.TagTTL.D(),
		FactsTTL:     cfg.Cache.FactsTTL.D(),
		NegativeTTL:  cfg.Cache.NegativeTTL.D(),
		MaxEntries:   cfg.Cache.MaxEntries,
		FetchTimeout: cfg.Limits.FetchTimeout.D(),
		MaxInFlight:  cfg.Limits.MaxInFlight,
	}
	if m != nil {
		ro.Observer = m
		lo.Observer = m
	}
	rc, err := registry.New(ro)
	if err != nil {
		return nil, nil, err
	}
	lo.Registry = rc
	lk, err := lookup.New(lo)
	return lk, sv, err
}

// observerOrNil avoids a typed-nil interface when there are no metrics.
func observerOrNil(m *Metrics) signature.Observer {
	if m == nil {
		return nil
	}
	return m
}

// NewPolicy starts the policy engine a config describes: the embedded bundle
// or policy.dir, with data.imagegate.params and data.imagegate.registries.
func NewPolicy(ctx context.Context, cfg *config.Config, logger *slog.Logger, m *Metrics) (*rego.Engine, error) {
	o := rego.Options{
		Dir:       cfg.Policy.Dir,
		OPAConfig: cfg.Policy.OPAConfig,
		Query:     cfg.Policy.Query,
		V0:        cfg.Policy.RegoVersion == "v0",
		Data: map[string]any{
			"params":     orEmpty(cfg.Policy.Params),
			"registries": cfg.Registries.Allow,
		},
		Logger: logger,
	}
	if m != nil {
		o.OnReload = m.ObservePolicyReload
	}
	return rego.New(ctx, o)
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
