package server

import (
	"context"
	"log/slog"
	"time"
)

// trustRefresher is what the refresh loop needs from the signature
// verifier (*signature.Verifier).
type trustRefresher interface {
	Refresh(ctx context.Context) error
	Epoch() uint64
}

// refreshTrust loads trust.* again every interval (trust.refreshInterval)
// until ctx is done or stop is called; stop waits for a refresh in progress,
// which stop cancels. A failed refresh is logged and counted, and the
// previous keys and roots keep verifying: readiness does not change (see
// trustStatus). A refresh that changed the keys or roots (v.Epoch moved)
// calls changed, which drops the facts cached under the old ones (see
// lookup.Service.TrustChanged): a removed key or root must not keep images
// admitted for factsTTL. Like the policy watcher, it never runs per request.
func refreshTrust(ctx context.Context, v trustRefresher, interval time.Duration, logger *slog.Logger, m *Metrics, changed func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			start, epoch := time.Now(), v.Epoch()
			err := v.Refresh(ctx)
			if ctx.Err() != nil {
				return // shutting down: not a refresh failure
			}
			m.ObserveTrustRefresh(err)
			if err != nil {
				logger.ErrorContext(ctx, "trust refresh failed; the previous keys and trusted roots keep verifying",
					slog.String("error", err.Error()), slog.String("next", interval.String()))
				continue
			}
			if v.Epoch() == epoch {
				logger.InfoContext(ctx, "trust refreshed, unchanged", slog.Duration("took", time.Since(start)))
				continue
			}
			changed()
			logger.InfoContext(ctx, "trust refreshed: keys or trusted roots changed; cached facts dropped", slog.Duration("took", time.Since(start)))
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// trustStatus is the /readyz detail while the last trust refresh failed. The
// server stays ready: the previous keys and roots still verify.
func trustStatus(v interface{ Status() error }) (string, bool) {
	if err := v.Status(); err != nil {
		return "refresh failed, previous keys and trusted roots verifying: " + err.Error(), true
	}
	return "", false
}

// ObserveTrustRefresh counts a trust refresh; a success also sets
// imagegate_trust_last_success_timestamp_seconds.
func (m *Metrics) ObserveTrustRefresh(err error) {
	if err != nil {
		m.trustRefreshes.WithLabelValues("error").Inc()
		return
	}
	m.trustRefreshes.WithLabelValues("ok").Inc()
	m.trustLoaded.SetToCurrentTime()
}
