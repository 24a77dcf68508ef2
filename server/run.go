package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/imagegate/imagegate/server/certs"
	"github.com/imagegate/imagegate/server/config"
)

// Run serves cfg until ctx is cancelled, then shuts down gracefully: it stops
// accepting, lets requests in flight finish (bounded), and returns.
// If ready is non-nil it receives the bound address once serving.
func Run(ctx context.Context, cfg *config.Config, logger *slog.Logger, ready chan<- string) error {
	if err := cfg.ValidateServe(); err != nil {
		return err
	}
	m := NewMetrics()
	lk, sv, err := newLookup(cfg, m, 1)
	if err != nil {
		return err
	}
	if t := cfg.Trust; t.RefreshInterval != nil && t.RefreshInterval.D() > 0 && len(t.Keys)+len(t.TrustedRoots)+len(t.TUF) > 0 {
		stop := refreshTrust(ctx, sv, t.RefreshInterval.D(), logger, m, lk.TrustChanged)
		defer stop()
	}
	policy, err := NewPolicy(ctx, cfg, logger, m)
	if err != nil {
		return err
	}
	defer policy.Close(context.WithoutCancel(ctx))
	minVersion := uint16(tls.VersionTLS13)
	if cfg.TLS.MinVersion == "1.2" {
		minVersion = tls.VersionTLS12
	}
	rl, err := certs.NewReloader(certs.Options{
		CertFile:     cfg.TLS.CertFile,
		KeyFile:      cfg.TLS.KeyFile,
		ClientCAFile: cfg.TLS.ClientCAFile,
		// Probes present no certificate; /v1/* and /metrics require one.
		ClientCertOptional: true,
		MinVersion:         minVersion,
		Logger:             logger,
		OnReload:           m.ObserveCertReload,
	})
	if err != nil {
		return err
	}
	h := New(Deps{
		Lookup:            lk,
		Metrics:           m,
		Logger:            logger,
		Budget:            cfg.Budget.D(),
		Limits:            Limits{MaxBodyBytes: cfg.Limits.MaxBodyBytes, MaxKeys: cfg.Limits.MaxKeys, MaxConcurrentRequests: cfg.Limits.MaxConcurrentRequests},
		KeepTag:           cfg.Digest.KeepTag,
		RequireClientCert: cfg.TLS.ClientCAFile != "",
		Policy:            policy,
		Status:            func() map[string]string { return readyDetails(policy, sv) },
	})
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         rl.TLSConfig(),
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(), // slowloris: headers within this…
		ReadTimeout:       cfg.Server.ReadTimeout.D(),       // …and the whole request within this
		WriteTimeout:      cfg.Budget.D() + 10*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// HTTP/2 ignores ReadHeaderTimeout: a connection that stalls mid
		// header block (or sends nothing after the preface) would stay
		// open. Ping a connection silent for readHeaderTimeout and close it
		// if the ping is not answered within readHeaderTimeout.
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: cfg.Server.ReadHeaderTimeout.D(),
			PingTimeout:     cfg.Server.ReadHeaderTimeout.D(),
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// Requests in flight at shutdown finish with their own budget.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	addr := ln.Addr().String()
	logger.InfoContext(ctx, "serving", slog.String("addr", addr), slog.String("version", Version),
		slog.Bool("mtls", cfg.TLS.ClientCAFile != ""), slog.String("budget", cfg.Budget.D().String()))
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	if ready != nil {
		ready <- addr
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Budget.D()+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// readyDetails are /readyz details that do not make the server unready: a
// failed policy reload (the previous policy serves) and a failed trust
// refresh (the previous keys and roots verify).
func readyDetails(policy, trust interface{ Status() error }) map[string]string {
	out := map[string]string{}
	if err := policy.Status(); err != nil {
		out["policy"] = "reload failed, previous policy serving: " + err.Error()
	}
	if msg, failed := trustStatus(trust); failed {
		out["trust"] = msg
	}
	return out
}
